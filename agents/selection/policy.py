"""The no-LLM policy (no LLM configured, or an LLM step fell back).

Summary = the prompt; components = its comma- and clause-separated phrases; filtering =
a similarity threshold (absolute, and relative to each query's best match) plus
maximal-marginal-relevance de-duplication. Pure functions of their inputs.
"""

from __future__ import annotations

import numpy as np

from agents.prompt_syntax import ParsedPrompt
from agents.selection.result import Component, DroppedCandidate, SelectedExpert
from agents.selection.state import Analysis, Candidate
from tools.settings import SelectionSettings

POLICY = "no-LLM policy"


def analysis_from_prompt(parsed: ParsedPrompt, settings: SelectionSettings) -> Analysis:
    """The prompt as summary; its phrases (the most emphasised first when too many) as
    components, each its own attribute."""
    ranked = sorted(enumerate(parsed.phrases), key=lambda item: (-item[1].weight, item[0]))
    chosen = sorted(ranked[: settings.max_attributes], key=lambda item: item[0])
    return Analysis(
        summary=parsed.text[: settings.max_prompt_chars],
        components=[Component(name=p.text, attributes=[p.text]) for _, p in chosen],
    )


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
