"""Nodes of the selection graph; each returns a partial state update.

parse → analyse (LLM: summary + decomposition) → embed_queries → find_checkpoints →
find_loras → filter (LLM: keep / drop) → assemble (guards and bounds).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from agents.prompt_syntax import CLIP_TOKEN_LIMIT, ParsedPrompt, parse_prompt
from agents.selection import prompts, tools
from agents.selection.errors import EmptyPromptError, NoExpertsError, TagWeightError
from agents.selection.needs import language_hint, split_negative
from agents.selection.policy import (
    POLICY,
    NeedEvidence,
    analysis_from_prompt,
    avoid_phrases,
    banned_by_negatives,
    filter_by_need,
    filter_by_similarity,
)
from agents.selection.result import (
    Component,
    DroppedCandidate,
    SelectedExpert,
    SelectionResult,
    TagMatch,
)
from agents.selection.schemas import FilterDecision, PromptAnalysis
from agents.selection.state import (
    Analysis,
    Candidate,
    Runtime,
    SelectionContext,
    SelectionState,
)
from graph.errors import UnknownExpertError
from graph.records import WEIGHT_RANGE, ExpertKind
from tools.llm import structured_call

MAX_REQUESTS = 3  # LLM requests per prompt: ≤ 2 for steps 1–3, the rest for filtering
NON_LATIN = 0.3


@contextmanager
def _span(ctx: SelectionContext, node: str, inputs: Any) -> Iterator[dict[str, Any]]:
    if ctx.tracer is None:
        yield {}
        return
    with ctx.tracer.span(node, inputs) as fields:
        yield fields


def parse(state: SelectionState, runtime: Runtime) -> dict[str, Any]:
    """Read the prompt's syntax (and its ``Negative prompt:`` text), refuse a blank one,
    check the family, resolve <lora> tags."""
    ctx = runtime.context
    with _span(ctx, "parse", {"prompt": state["prompt"]}) as span:
        positive, negative_text = split_negative(state["prompt"])
        parsed = parse_prompt(positive)
        negative = [p.text for p in parse_prompt(negative_text).phrases] if negative_text else []
        if parsed.is_blank:
            raise EmptyPromptError()
        low, high = WEIGHT_RANGE
        for tag in parsed.lora_tags:
            if not low <= tag.weight <= high:
                raise TagWeightError(tag.raw, tag.weight, low, high)
        family = ctx.settings.family.value
        counts = tools.active_counts(ctx, "parse")
        if not counts.get(family):
            raise NoExpertsError(family, {f: n for f, n in counts.items() if n})
        warnings = _input_warnings(parsed, ctx)
        requested: dict[str, SelectedExpert] = {}
        matches = []
        for tag in parsed.lora_tags:
            expert, note = tools.find_tagged_expert(ctx, "parse", tag)
            matches.append(
                TagMatch(
                    tag=tag.raw,
                    name=tag.name,
                    weight=tag.weight,
                    expert_id=expert.id if expert else None,
                    note=note,
                )
            )
            if expert is None:
                warnings.append(f"{tag.raw}: {note}")
            elif expert.id not in requested:
                requested[expert.id] = SelectedExpert(
                    id=expert.id,
                    name=expert.name,
                    kind=expert.kind,
                    reason=f"requested in the prompt with {tag.raw}",
                    source="prompt-tag",
                    weight=tag.weight,
                    trigger_words=expert.trigger_words,
                    demo=expert.demo,
                )
        update = {
            "parsed": parsed,
            "negative": negative,
            "requested": list(requested.values()),
            "tag_matches": matches,
            "warnings": warnings,
        }
        span["outputs"] = {k: v for k, v in update.items() if k != "parsed"} | {
            "text": parsed.text,
            "phrases": [p.text for p in parsed.phrases],
        }
    return update


def analyse(state: SelectionState, runtime: Runtime) -> dict[str, Any]:
    """Steps 1 and 3 in one structured call: summary, components, visual attributes."""
    ctx = runtime.context
    parsed = state["parsed"]
    negative = state.get("negative", [])
    with _span(ctx, "analyse", {"text": parsed.text}) as span:
        if not parsed.text:
            analysis = Analysis(summary="", components=[])
            span.update(outputs=analysis, mode="no-llm")
            return {
                "analysis": analysis,
                "warnings": ["the prompt has no text besides <lora:...> tags: nothing to search"],
            }
        result = structured_call(
            ctx.model,
            PromptAnalysis,
            prompts.analysis_messages(parsed, ctx.settings),
            fallback=lambda: analysis_from_prompt(parsed, ctx.settings, negative),
            tracer=ctx.tracer,
            node="analyse",
            max_retries=min(ctx.llm.max_schema_retries, MAX_REQUESTS - 2),
            method=ctx.llm.structured_method,
        )
        warnings = []
        if isinstance(result.value, PromptAnalysis):
            analysis, capped = _from_llm(result.value, ctx.settings.max_attributes)
            avoid = [*avoid_phrases(parsed, negative), *result.value.avoid]
            analysis.avoid = list(dict.fromkeys(a.strip() for a in avoid if a.strip()))
            if capped:
                warnings.append(
                    f"the LLM named {capped} attributes; the first "
                    f"{ctx.settings.max_attributes} are searched (selection.max_attributes)"
                )
        else:
            analysis = result.value
            language = (
                "a non-Latin script"
                if parsed.non_latin_share > NON_LATIN
                else language_hint(parsed.text)
            )
            if language:
                warnings.append(
                    f"the prompt looks written in {language} and the embedding model "
                    "(all-MiniLM-L6-v2) is English-only: without an LLM, which restates the "
                    "needs in English, experts are found poorly or not at all. Fix: write "
                    "the prompt in English, or configure an LLM"
                )
        span.update(
            outputs={
                "summary": analysis.summary,
                "components": analysis.components,
                "avoid": analysis.avoid,
            },
            mode=result.mode,
        )
    return {
        "analysis": analysis,
        "step_modes": {"analyse": result.mode},
        "llm_requests": len(result.calls),
        "warnings": warnings,
    }


def embed_queries(state: SelectionState, runtime: Runtime) -> dict[str, Any]:
    """Embed the summary, every attribute and what the prompt rules out in one batch."""
    ctx = runtime.context
    analysis = state["analysis"]
    texts = [analysis.summary, *analysis.attributes] if analysis.summary else []
    avoid = analysis.avoid if texts else []
    with _span(ctx, "embed_queries", {"texts": texts, "avoid": avoid}) as span:
        vectors = list(tools.embed(ctx, "embed_queries", texts + avoid)) if texts else []
        span["outputs"] = {"count": len(texts) + len(avoid)}
    return {"query_vectors": vectors[: len(texts)], "avoid_vectors": vectors[len(texts) :]}


def find_checkpoints(state: SelectionState, runtime: Runtime) -> dict[str, Any]:
    """Step 2: top-K1 checkpoints of the active family for the summary and for each
    attribute (a phrase such as "85mm photo" asks for a checkpoint), and any checkpoint
    the prompt names."""
    ctx = runtime.context
    vectors = state["query_vectors"]
    analysis = state["analysis"]
    with _span(ctx, "find_checkpoints", {"summary": analysis.summary}) as span:
        found: list[Candidate] = []
        if vectors:
            queries = {"summary": vectors[0]} | dict(
                zip(analysis.attributes, vectors[1:], strict=True)
            )
            found = tools.search(
                ctx, "find_checkpoints", queries, ctx.settings.k1, ExpertKind.CKPT, vectors[0]
            )
            found = _with_named(ctx, "find_checkpoints", found, state, ExpertKind.CKPT)
        span["outputs"] = _listing(found)
    return {"checkpoint_candidates": found}


def find_loras(state: SelectionState, runtime: Runtime) -> dict[str, Any]:
    """Step 4: top-K2 LoRAs per attribute (experts the prompt's tags name are excluded)."""
    ctx = runtime.context
    attributes = state["analysis"].attributes
    vectors = state["query_vectors"]
    with _span(ctx, "find_loras", {"attributes": attributes}) as span:
        found: list[Candidate] = []
        if attributes and vectors:
            found = tools.search(
                ctx,
                "find_loras",
                dict(zip(attributes, vectors[1:], strict=True)),
                ctx.settings.k2,
                ExpertKind.PEFT,
                vectors[0],
            )
            found = _with_named(ctx, "find_loras", found, state, ExpertKind.PEFT)
        requested = {r.id for r in state.get("requested", [])}
        found = [c for c in found if c.id not in requested]
        span["outputs"] = _listing(found)
    retriever = ctx.lora_retriever if ctx.settings.retriever != "description" else None
    note = retriever.note if retriever is not None else None
    return {"lora_candidates": found, "warnings": [note] if note else []}


def route_after_retrieval(state: SelectionState) -> Literal["filter", "assemble"]:
    """Skip the filtering call when retrieval found nothing."""
    if state.get("checkpoint_candidates") or state.get("lora_candidates"):
        return "filter"
    return "assemble"


def filter_candidates(state: SelectionState, runtime: Runtime) -> dict[str, Any]:
    """Step 5: keep what fits the needs, drop the irrelevant and the redundant."""
    ctx = runtime.context
    checkpoints = state.get("checkpoint_candidates", [])
    loras = state.get("lora_candidates", [])
    requested = state.get("requested", [])
    used = state.get("llm_requests", 0)
    with _span(
        ctx, "filter", {"checkpoints": _listing(checkpoints), "loras": _listing(loras)}
    ) as span:

        def no_llm() -> tuple[list[SelectedExpert], list[DroppedCandidate]]:
            if ctx.settings.no_llm_policy == "needs":
                return filter_by_need(checkpoints + loras, evidence(), ctx.settings, requested)
            ids = [c.id for c in checkpoints + loras] + [r.id for r in requested]
            vectors = tools.vectors_of(ctx, ids)
            kept_c, dropped_c = filter_by_similarity(checkpoints, vectors, ctx.settings)
            kept_l, dropped_l = filter_by_similarity(loras, vectors, ctx.settings, requested)
            return kept_c + kept_l, dropped_c + dropped_l

        def evidence() -> NeedEvidence:
            analysis = state["analysis"]
            vectors = state.get("query_vectors", [])
            return tools.need_evidence(
                ctx,
                "filter",
                checkpoints + loras,
                analysis.attributes,
                vectors[1:],
                analysis.avoid,
                state.get("avoid_vectors", []),
                vectors[0] if vectors else None,
            )

        def names_a_candidate(decision: FilterDecision) -> None:
            # schema-valid but empty or invented verdicts would drop every candidate
            ids = {c.id for c in checkpoints + loras}
            if ids and not any(v.id in ids for v in decision.verdicts):
                raise ValueError(
                    "no verdict names a candidate: give one verdict per candidate, its id "
                    "copied exactly"
                )

        result = structured_call(
            ctx.model,
            FilterDecision,
            prompts.filter_messages(
                state["parsed"], state["analysis"], checkpoints, loras, requested, ctx.settings
            ),
            fallback=no_llm,
            tracer=ctx.tracer,
            node="filter",
            max_retries=max(min(ctx.llm.max_schema_retries, MAX_REQUESTS - used - 1), 0),
            method=ctx.llm.structured_method,
            check=names_a_candidate,
        )
        unknown: list[str] = []
        warnings = []
        if isinstance(result.value, FilterDecision):
            kept, dropped, unknown = _apply_verdicts(result.value, checkpoints + loras, requested)
            if unknown:
                warnings.append(
                    "the LLM returned ids that are not candidates (dropped): " + ", ".join(unknown)
                )
        else:
            kept, dropped = result.value
        if state["analysis"].avoid and kept and result.mode != "no-llm":
            # what the prompt rules out bans experts whatever chose them (the LLM or the
            # no-LLM policy after a fallback: the need-aware one already did)
            banned = banned_by_negatives(checkpoints + loras, evidence())
            for expert in [k for k in kept if k.id in banned]:
                kept.remove(expert)
                dropped.append(
                    DroppedCandidate.of(expert, f"{POLICY}: {banned[expert.id]}", "negative")
                )
        span.update(
            outputs={"kept": kept, "dropped": dropped, "unknown_ids": unknown}, mode=result.mode
        )
    return {
        "kept": kept,
        "dropped": dropped,
        "unknown_ids": unknown,
        "warnings": warnings,
        "step_modes": {"filter": result.mode},
        "llm_requests": len(result.calls),
    }


def assemble(state: SelectionState, runtime: Runtime) -> dict[str, Any]:
    """Guards (family, status, existence), count bounds, and the base-model fallback."""
    ctx = runtime.context
    settings = ctx.settings
    kept = state.get("kept", [])
    with _span(ctx, "assemble", {"kept": [k.id for k in kept]}) as span:
        dropped: list[DroppedCandidate] = []
        warnings: list[str] = []
        valid = [k for k in [*state.get("requested", []), *kept] if _usable(ctx, k, dropped)]
        requested = [k for k in valid if k.source == "prompt-tag"]
        found = [k for k in valid if k.source == "retrieval"]  # best first
        checkpoints = _bounded(
            [k for k in found if k.kind is ExpertKind.CKPT],
            settings.max_checkpoints,
            "selection.max_checkpoints",
            dropped,
        )
        if len(requested) > settings.max_loras:
            warnings.append(
                f"the prompt names {len(requested)} LoRAs; the first {settings.max_loras} are "
                "used (selection.max_loras)"
            )
        loras = _bounded(
            requested + [k for k in found if k.kind is ExpertKind.PEFT],
            settings.max_loras,
            "selection.max_loras",
            dropped,
        )
        if not checkpoints:
            warnings.append(
                f"no checkpoint expert was selected: the {settings.family.value} base model "
                "(Settings.base_model) is the checkpoint of the merge"
            )
        modes = state.get("step_modes", {})
        mode = (
            "no-llm"
            if ctx.model is None
            else ("fallback" if "fallback" in modes.values() else "llm")
        )
        analysis = state["analysis"]
        all_warnings = [*state.get("warnings", []), *warnings]
        result = SelectionResult(
            prompt=state["prompt"],
            text=state["parsed"].text,
            family=settings.family,
            mode=mode,
            step_modes=modes,
            summary=analysis.summary,
            components=analysis.components,
            attributes=analysis.attributes,
            avoid=analysis.avoid,
            checkpoints=checkpoints,
            loras=loras,
            base_model=not checkpoints,
            dropped=[*state.get("dropped", []), *dropped],
            unknown_ids=state.get("unknown_ids", []),
            lora_tags=state.get("tag_matches", []),
            warnings=all_warnings,
            llm_requests=state.get("llm_requests", 0),
            demo=any(e.demo for e in checkpoints + loras),
        )
        span.update(outputs={"experts": result.expert_ids, "base_model": result.base_model})
    return {"result": result, "dropped": dropped, "warnings": warnings}


def _input_warnings(parsed: ParsedPrompt, ctx: SelectionContext) -> list[str]:
    warnings = []
    if parsed.over_clip_limit:
        warnings.append(
            f"the prompt is about {parsed.clip_tokens} CLIP tokens, over the text encoder's "
            f"{CLIP_TOKEN_LIMIT}-token window: generation cuts or chunks it; selection reads it all"
        )
    if len(parsed.text) > ctx.settings.max_prompt_chars:
        warnings.append(
            f"the prompt has {len(parsed.text)} characters; the first "
            f"{ctx.settings.max_prompt_chars} are summarised (selection.max_prompt_chars)"
        )
    warnings += [f"{tag}: only <lora:...> tags name experts; ignored" for tag in parsed.other_tags]
    return warnings


def _from_llm(decision: PromptAnalysis, limit: int) -> tuple[Analysis, int]:
    """The LLM's decomposition with at most ``limit`` distinct attributes (and how many it
    named when that is more)."""
    seen: set[str] = set()
    components = []
    for item in decision.components:
        attributes = []
        for attribute in item.attributes:
            if attribute.lower() not in seen and len(seen) < limit:
                seen.add(attribute.lower())
                attributes.append(attribute)
        if attributes:
            components.append(Component(name=item.component, attributes=attributes))
    named = len({a.lower() for c in decision.components for a in c.attributes})
    return Analysis(summary=decision.summary, components=components), (
        named if named > limit else 0
    )


def _apply_verdicts(
    decision: FilterDecision, candidates: list[Candidate], requested: list[SelectedExpert]
) -> tuple[list[SelectedExpert], list[DroppedCandidate], list[str]]:
    """Kept and dropped candidates from the LLM's verdicts; ids it invented, listed."""
    by_id = {c.id: c for c in candidates}
    verdicts = {}
    unknown = []
    for verdict in decision.verdicts:
        if verdict.id in by_id:
            verdicts.setdefault(verdict.id, verdict)
        elif verdict.id not in {r.id for r in requested} and verdict.id not in unknown:
            unknown.append(verdict.id)
    kept, dropped = [], []
    for candidate in candidates:
        verdict = verdicts.get(candidate.id)
        if verdict is None:
            dropped.append(
                DroppedCandidate.of(candidate, "the LLM gave no verdict for it", "filter")
            )
        elif verdict.keep:
            kept.append(candidate.selected(verdict.reason))
        else:
            dropped.append(DroppedCandidate.of(candidate, verdict.reason, "filter"))
    kept.sort(key=lambda k: -(k.similarity or 0.0))
    return kept, dropped, unknown


def _usable(ctx: SelectionContext, chosen: SelectedExpert, dropped: list) -> bool:
    """True when the expert exists, is active and of the active family (else recorded)."""
    try:
        expert = ctx.graph.expert(chosen.id)
    except UnknownExpertError:
        problem = "it is no longer in the graph"
    else:
        if expert.base is not ctx.settings.family:
            problem = f"it is a {expert.base.value} expert"
        elif not expert.is_active:
            problem = "it is deprecated"
        else:
            return True
    dropped.append(DroppedCandidate.of(chosen, problem, "guard"))
    return False


def _bounded(
    chosen: list[SelectedExpert], limit: int, setting: str, dropped: list[DroppedCandidate]
) -> list[SelectedExpert]:
    dropped += [
        DroppedCandidate.of(e, f"over the bound of {limit} ({setting})", "bound")
        for e in chosen[limit:]
    ]
    return chosen[:limit]


def _listing(candidates: list[Candidate]) -> list[dict[str, Any]]:
    return [{"id": c.id, "matches": c.matches} for c in candidates]


def _with_named(
    ctx: SelectionContext,
    node: str,
    found: list[Candidate],
    state: SelectionState,
    kind: ExpertKind,
) -> list[Candidate]:
    """``found`` plus the experts of ``kind`` the prompt names by trigger word or name
    (their similarity to each query computed from the stored vectors)."""
    known = {c.id for c in found}
    text = " , ".join([state["parsed"].text, *state.get("negative", [])])
    extra = [c for c in tools.named_candidates(ctx, node, text, kind) if c.id not in known]
    if not extra:
        return found
    analysis = state["analysis"]
    vectors = state["query_vectors"]
    stored = tools.vectors_of(ctx, [c.id for c in extra])
    labels = ["summary", *analysis.attributes]
    for candidate in extra:
        sims = [float(v @ stored[candidate.id]) for v in vectors]
        candidate.matches = {q: round(s, 4) for q, s in zip(labels, sims, strict=True)}
        candidate.prompt_similarity = round(sims[0], 4) if sims else 0.0
    return found + extra
