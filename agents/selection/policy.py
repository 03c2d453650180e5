"""The no-LLM policy (no LLM configured, or an LLM step fell back).

Summary = the prompt; components = every phrase that is not a negation, with the word
pairs of a long phrase as further attributes (a need named inside a scene description:
"a low poly mountain lake" → "low poly"); what the prompt rules out = its negated phrases
("no neon") and its ``Negative prompt:`` text.

Filtering, need-aware (``selection.no_llm_policy = "needs"``, the default): a phrase
selects an expert when it asks for what the expert is for. The evidence, per phrase and
expert: the phrase names the expert (trigger word or name); the cosine of the phrase to
the expert's description, standardised against the expert's own cosines to generic
prompt phrases (so that broad descriptions that match everything weakly do not win,
and boilerplate like "artstation" selects nothing); the share of the phrase's words that
are the expert's rare tag or name words; and the calibration edges — how the expert
scored, against the other experts, on reference prompts near this prompt. The sum must
pass a threshold for the expert's role (style, character, ...) and description origin,
higher when the phrase shares no tag or name word with the expert; a character is taken
only when the prompt names it or describes it closely. Each phrase serves one need: it
keeps its single best expert of any kind (so "oil painting" takes the oil LoRA, not also
a painterly checkpoint) plus any expert it names; the prompt keeps its single best
checkpoint; a phrase of what the prompt rules out bans the experts it would select. When
nothing passes, nothing is selected.

The older filter (``"similarity"``: a similarity threshold plus MMR de-duplication) is
kept for comparison. Pure functions of their inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.prompt_syntax import ParsedPrompt
from agents.selection.needs import GENERIC_WORDS, LexicalIndex, Role, negated, words
from agents.selection.result import Component, DroppedCandidate, SelectedExpert
from agents.selection.state import Analysis, Candidate
from graph.records import ExpertKind
from tools.settings import SelectionSettings

POLICY = "no-LLM policy"

# Thresholds on the need score (standard deviations above an expert's usual cosine, plus
# bonuses), per role, tuned on the tuning half of evals/data/selection_needs.jsonl only
# (``python -m evals.selection_needs``), with a safety margin: the lowest bar that keeps
# the tuning half's wrong-expert rate at half the 10 % target (the test half ran higher).
THRESHOLDS: dict[Role, float] = {
    "style": 4.75,
    "character": 6.25,
    "concept": 4.75,
    "lighting": 4.75,
    "detail": 4.75,
    "quality": 4.75,
    "checkpoint": 2.6,
}
# Per description origin: crawled text without an LLM summary is noisier than a summary.
ORIGIN_OFFSETS = {"llm": 0.0, "manual": 0.0, "demo": 0.0, "no-llm": 0.2}
KEYWORD_WEIGHT = 2.0  # a phrase made only of the expert's rare tag/name words adds 2 sd
SEMANTIC_OFFSET = 1.0  # the bar rises by this when the phrase shares no tag or name word
CHARACTER_MIN_COSINE = 0.55  # an unnamed character must be described this closely
CALIBRATION_WEIGHT = 0.5  # per standard deviation of calibration score on near prompts
MIN_SD = 0.03
BAN_KEYWORD_SHARE = 0.5  # "no neon" bans what is tagged neon, whatever its description


def analysis_from_prompt(
    parsed: ParsedPrompt, settings: SelectionSettings, negative: list[str] = ()
) -> Analysis:
    """The prompt as summary; every phrase that is not a negation as a component, its
    attributes the phrase and its word pairs; negated phrases and the negative prompt as
    what to avoid."""
    components = [
        Component(name=p.text, attributes=[p.text, *windows(p.text)])
        for p in parsed.phrases
        if negated(p.text) is None
    ]
    return Analysis(
        summary=parsed.text[: settings.max_prompt_chars],
        components=components,
        avoid=avoid_phrases(parsed, negative),
    )


WINDOW_MIN_WORDS = 3


def windows(phrase: str) -> list[str]:
    """Adjacent word pairs of a long phrase, not across function words ("a low poly
    mountain lake" → "low poly", "poly mountain", "mountain lake"): a need named inside
    a description of the scene."""
    runs: list[list[str]] = [[]]
    for word in words(phrase):
        if word in GENERIC_WORDS:
            runs.append([])
        else:
            runs[-1].append(word)
    if sum(len(r) for r in runs) < WINDOW_MIN_WORDS:
        return []
    return [f"{r[i]} {r[i + 1]}" for r in runs for i in range(len(r) - 1)]


def avoid_phrases(parsed: ParsedPrompt, negative: list[str] = ()) -> list[str]:
    """What the prompt rules out: its negated phrases' objects, then its negative prompt."""
    ruled_out = [n for p in parsed.phrases if (n := negated(p.text))]
    return list(dict.fromkeys([*ruled_out, *negative]))


@dataclass
class NeedEvidence:
    """Everything the need-aware filter weighs, gathered by the agent's tools."""

    phrases: list[str]
    phrase_vectors: np.ndarray  # one row per phrase
    avoid: list[str]
    avoid_vectors: np.ndarray  # one row per avoid phrase
    vectors: dict[str, np.ndarray]  # candidate id -> description embedding
    background: dict[str, tuple[float, float]]  # id -> mean, sd of cosines to generic text
    lexical: LexicalIndex
    calibration: dict[str, float]  # id -> standardised calibration score near the prompt


@dataclass
class _Score:
    phrase: str
    score: float
    cosine: float
    z: float
    keywords: float
    named: str | None


def _scores(
    candidate: Candidate, texts: list[str], vectors: np.ndarray, evidence: NeedEvidence
) -> list[_Score]:
    if not texts:
        return []
    mean, sd = evidence.background.get(candidate.id, (0.0, 1.0))
    cosines = vectors @ evidence.vectors[candidate.id]
    bonus = CALIBRATION_WEIGHT * evidence.calibration.get(candidate.id, 0.0)
    out = []
    for text, cosine in zip(texts, cosines, strict=True):
        z = (float(cosine) - mean) / max(sd, MIN_SD)
        keywords = evidence.lexical.keyword_match(text, candidate.id)
        named = evidence.lexical.named_in(text).get(candidate.id)
        out.append(_Score(text, z + KEYWORD_WEIGHT * keywords + bonus, float(cosine), z,
                          keywords, named))  # fmt: skip
    return out


def threshold(role: Role, origin: str) -> float:
    return THRESHOLDS[role] + ORIGIN_OFFSETS.get(origin, 0.0)


def _bar(score: _Score, role: Role, origin: str) -> float:
    return threshold(role, origin) + (SEMANTIC_OFFSET if score.keywords == 0 else 0.0)


def _passes(score: _Score, role: Role, origin: str) -> bool:
    if score.named is not None:
        return True
    if role == "character" and score.cosine < CHARACTER_MIN_COSINE:
        return False
    return score.score >= _bar(score, role, origin)


def _why(score: _Score, role: Role, origin: str) -> str:
    if score.named is not None:
        return f"{score.phrase!r} names it ({score.named!r})"
    return (
        f"{score.phrase!r} asks for this {role} (need score {score.score:.2f} ≥ "
        f"{_bar(score, role, origin):.2f}: cosine {score.cosine:.2f}, {score.z:+.1f} sd over its "
        f"usual match, tag words {score.keywords:.0%})"
    )


def filter_by_need(
    candidates: list[Candidate],
    evidence: NeedEvidence,
    settings: SelectionSettings,
    seeds: list[SelectedExpert] = (),
) -> tuple[list[SelectedExpert], list[DroppedCandidate]]:
    """The need-aware filter (module docstring): kept experts, best first, and the
    dropped candidates with the reason for each."""
    cards = evidence.lexical.cards
    role = {c.id: cards[c.id].role if c.id in cards else _fallback_role(c) for c in candidates}
    origin = {c.id: cards[c.id].origin if c.id in cards else "manual" for c in candidates}
    best: dict[str, _Score] = {}
    per_phrase: dict[str, list[tuple[_Score, Candidate]]] = {}
    for candidate in candidates:
        cid = candidate.id
        for score in _scores(candidate, evidence.phrases, evidence.phrase_vectors, evidence):
            if cid not in best or score.score > best[cid].score:
                best[cid] = score
            if _passes(score, role[cid], origin[cid]):
                per_phrase.setdefault(score.phrase, []).append((score, candidate))

    # each phrase serves one need: its best expert of any kind (and every expert it names)
    chosen: dict[str, tuple[_Score, Candidate]] = {}
    checkpoints: list[tuple[_Score, Candidate]] = []
    for found in per_phrase.values():
        ranked = sorted(found, key=lambda f: (f[0].named is None, -f[0].score))
        for rank, (score, candidate) in enumerate(ranked):
            if rank and score.named is None:
                break
            if candidate.kind is ExpertKind.CKPT:
                checkpoints.append((score, candidate))
                continue
            previous = chosen.get(candidate.id)
            if previous is None or score.score > previous[0].score:
                chosen[candidate.id] = (score, candidate)
    if checkpoints:  # one checkpoint: the best that a phrase asks for
        score, candidate = max(checkpoints, key=lambda f: (f[0].named is not None, f[0].score))
        chosen[candidate.id] = (score, candidate)

    banned = _banned(candidates, evidence, role, origin)
    kept: list[SelectedExpert] = []
    dropped: list[DroppedCandidate] = []
    kept_vectors = [(s.id, evidence.vectors[s.id]) for s in seeds if s.id in evidence.vectors]
    order = sorted(chosen.values(), key=lambda f: (f[1].kind is ExpertKind.PEFT, -f[0].score))
    for score, candidate in order:
        cid = candidate.id
        if cid in banned:
            dropped.append(DroppedCandidate.of(candidate, f"{POLICY}: {banned[cid]}", "negative"))
            continue
        twin, overlap = _closest(evidence.vectors[cid], kept_vectors)
        if twin is not None and overlap >= settings.redundancy_threshold:
            dropped.append(
                DroppedCandidate.of(
                    candidate,
                    f"{POLICY}: redundant with {twin} (cosine {overlap:.3f} ≥ "
                    f"{settings.redundancy_threshold:.2f})",
                    "redundant",
                )
            )
            continue
        kept_vectors.append((cid, evidence.vectors[cid]))
        kept.append(candidate.selected(f"{POLICY}: {_why(score, role[cid], origin[cid])}"))
    for candidate in candidates:
        if candidate.id in chosen:
            continue
        score = best.get(candidate.id)
        reason = (
            f"no phrase asks for this {role[candidate.id]}"
            + (
                f" (best: {score.phrase!r}, need score {score.score:.2f} < "
                f"{_bar(score, role[candidate.id], origin[candidate.id]):.2f})"
                if score is not None
                else ""
            )
            if candidate.id not in banned
            else banned[candidate.id]
        )
        if score is not None and _passes(score, role[candidate.id], origin[candidate.id]):
            reason = f"a better expert was chosen for {score.phrase!r}"
        dropped.append(DroppedCandidate.of(candidate, f"{POLICY}: {reason}", "filter"))
    return kept, dropped


def banned_by_negatives(candidates: list[Candidate], evidence: NeedEvidence) -> dict[str, str]:
    """Candidates that a phrase of what the prompt rules out would select, and why."""
    cards = evidence.lexical.cards
    role = {c.id: cards[c.id].role if c.id in cards else _fallback_role(c) for c in candidates}
    origin = {c.id: cards[c.id].origin if c.id in cards else "manual" for c in candidates}
    return _banned(candidates, evidence, role, origin)


def _banned(candidates, evidence: NeedEvidence, role, origin) -> dict[str, str]:
    banned: dict[str, str] = {}
    for candidate in candidates:
        for score in _scores(candidate, evidence.avoid, evidence.avoid_vectors, evidence):
            tagged = score.keywords >= BAN_KEYWORD_SHARE
            if tagged or _passes(score, role[candidate.id], origin[candidate.id]):
                banned[candidate.id] = f"the prompt rules out {score.phrase!r}, which " + (
                    f"names it ({score.named!r})"
                    if score.named is not None
                    else f"would select it (need score {score.score:.2f})"
                    if not tagged
                    else f"is what it is tagged for (tag words {score.keywords:.0%})"
                )
                break
    return banned


def _fallback_role(candidate: Candidate) -> Role:
    return "checkpoint" if candidate.kind is ExpertKind.CKPT else "concept"


def background_stats(
    vectors: dict[str, np.ndarray], background: np.ndarray
) -> dict[str, tuple[float, float]]:
    """Mean and standard deviation of each expert's cosines to generic prompt phrases."""
    if not vectors or not len(background):
        return {}
    ids = list(vectors)
    sims = np.stack([vectors[i] for i in ids]) @ background.T
    return {
        i: (float(m), float(s))
        for i, m, s in zip(ids, sims.mean(axis=1), sims.std(axis=1), strict=True)
    }


def calibration_evidence(
    prompt_vector: np.ndarray,
    expert_ids: list[str],
    ref_x: np.ndarray,
    edge_experts: np.ndarray,
    edge_refs: np.ndarray,
    edge_scores: np.ndarray,
    near: float = 0.5,
) -> dict[str, float]:
    """How each expert scored on reference prompts near the prompt, in standard deviations
    of all experts' scores on the same reference prompt (metrics averaged; weighted by
    how near each reference prompt is). ``edge_experts`` holds expert ids per edge."""
    if not len(ref_x) or not len(edge_refs):
        return {}
    closeness = ref_x @ prompt_vector
    near_refs = np.flatnonzero(closeness >= near)
    near_rows = np.flatnonzero((closeness >= near)[edge_refs])  # one pass over all edges
    wanted = set(expert_ids)
    totals: dict[str, list[float]] = {}
    for ref in near_refs:
        rows = near_rows[edge_refs[near_rows] == ref]
        if len(rows) < 2:
            continue
        scores = edge_scores[rows]
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(scores, axis=0)
            sd = np.nanstd(scores, axis=0)
            z = np.nanmean(np.where(sd > 0, (scores - mean) / np.where(sd > 0, sd, 1), 0), axis=1)
        weight = float(closeness[ref] - near) + 1e-3
        for row, value in zip(rows, z, strict=True):
            expert_id = str(edge_experts[row])
            if expert_id in wanted and np.isfinite(value):
                acc = totals.setdefault(expert_id, [0.0, 0.0])
                acc[0] += weight * float(value)
                acc[1] += weight
    return {i: a / w for i, (a, w) in totals.items() if w > 0}


def filter_by_similarity(
    candidates: list[Candidate],
    vectors: dict[str, np.ndarray],
    settings: SelectionSettings,
    seeds: list[SelectedExpert] = (),
) -> tuple[list[SelectedExpert], list[DroppedCandidate]]:
    """Keep candidates close enough to the prompt and to a query, then drop near-duplicates
    by MMR.

    A candidate needs a similarity of at least ``min_similarity`` to the whole prompt (the
    summary), and passes a query when its similarity to it is at least ``min_similarity``
    and within ``relative_margin`` of the best candidate for that query. Passing candidates
    are taken in maximal-marginal-relevance order; one whose cosine to an already kept
    expert (``seeds`` count as kept) reaches ``redundancy_threshold`` is dropped as
    redundant. Returns the kept experts in MMR order and the dropped ones.
    """
    best: dict[str, float] = {}
    for candidate in candidates:
        for query, sim in candidate.matches.items():
            best[query] = max(best.get(query, -1.0), sim)
    floor = settings.min_similarity
    passing: dict[str, tuple[Candidate, str, float]] = {}
    dropped: list[DroppedCandidate] = []
    for candidate in candidates:
        if candidate.prompt_similarity < floor:
            dropped.append(
                DroppedCandidate.of(
                    candidate,
                    f"{POLICY}: similarity {candidate.prompt_similarity:.3f} to the whole prompt "
                    f"is below the threshold {floor:.2f}",
                    "filter",
                )
            )
            continue
        hits = {
            q: s
            for q, s in candidate.matches.items()
            if s >= floor and s >= best[q] - settings.relative_margin
        }
        if hits:
            query = max(hits, key=hits.get)
            passing[candidate.id] = (candidate, query, hits[query])
            continue
        query = max(candidate.matches, key=candidate.matches.get)
        sim = candidate.matches[query]
        why = (
            f"below the similarity threshold {floor:.2f}"
            if sim < floor
            else f"more than {settings.relative_margin:.2f} below the best match "
            f"({best[query]:.3f}) for that query"
        )
        dropped.append(
            DroppedCandidate.of(
                candidate, f"{POLICY}: similarity {sim:.3f} to {query!r} is {why}", "filter"
            )
        )

    kept: list[SelectedExpert] = []
    chosen = [(s.id, vectors[s.id]) for s in seeds if s.id in vectors]
    remaining = list(passing)
    lam = settings.mmr_lambda
    while remaining:
        penalties = {cid: _closest(vectors[cid], chosen) for cid in remaining}
        pick = max(remaining, key=lambda cid: lam * passing[cid][2] - (1 - lam) * penalties[cid][1])
        remaining.remove(pick)
        candidate, query, sim = passing[pick]
        twin, overlap = penalties[pick]
        if twin is not None and overlap >= settings.redundancy_threshold:
            dropped.append(
                DroppedCandidate.of(
                    candidate,
                    f"{POLICY}: redundant with {twin} (cosine {overlap:.3f} ≥ "
                    f"{settings.redundancy_threshold:.2f})",
                    "redundant",
                )
            )
            continue
        chosen.append((pick, vectors[pick]))
        kept.append(
            candidate.selected(
                f"{POLICY}: similarity {sim:.3f} to {query!r} (threshold "
                f"{floor:.2f}, within {settings.relative_margin:.2f} of the best match)"
            )
        )
    return kept, dropped


def _closest(vector: np.ndarray, chosen: list[tuple[str, np.ndarray]]) -> tuple[str | None, float]:
    """The already kept expert most similar to ``vector`` and that cosine."""
    if not chosen:
        return None, 0.0
    sims = np.stack([v for _, v in chosen]) @ vector
    i = int(np.argmax(sims))
    return chosen[i][0], float(sims[i])
