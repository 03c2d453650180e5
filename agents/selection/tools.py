"""The agent's tools over the universal graph: counts, embeddings, top-k search, tag lookup.

Each call is recorded in the trace as a ``tool_call`` event.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import PurePath
from typing import TypeVar

import numpy as np

from agents.prompt_syntax import LoraTag
from agents.selection.errors import SelectionError
from agents.selection.state import Candidate, SelectionContext
from graph.records import Expert, ExpertKind, ExpertStatus

R = TypeVar("R")


def _traced(
    ctx: SelectionContext,
    node: str,
    tool: str,
    inputs: object,
    call: Callable[[], R],
    summary: Callable[[R], object] = lambda out: out,
) -> R:
    start = time.perf_counter()
    out = call()
    if ctx.tracer is not None:
        ctx.tracer.tool_call(node, tool, inputs, summary(out), (time.perf_counter() - start) * 1000)
    return out


def active_counts(ctx: SelectionContext, node: str) -> dict[str, int]:
    """Active experts per base family, e.g. ``{"sd15": 12, "sdxl": 3}``."""

    def count() -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in ctx.graph.store.stats()["by_kind_base_status"]:
            if row["status"] == ExpertStatus.ACTIVE.value:
                counts[row["base"]] = counts.get(row["base"], 0) + row["count"]
        return counts

    return _traced(ctx, node, "count_active_experts", None, count)


def embed(ctx: SelectionContext, node: str, texts: list[str]) -> np.ndarray:
    """Unit embeddings of the queries (one batch)."""
    return _traced(
        ctx,
        node,
        "embed",
        {"texts": texts},
        lambda: ctx.graph.embedder.embed(texts),
        lambda out: {"shape": list(out.shape)},
    )


def search(
    ctx: SelectionContext,
    node: str,
    queries: dict[str, np.ndarray],
    k: int,
    kind: ExpertKind,
    prompt_vector: np.ndarray,
) -> list[Candidate]:
    """Top-``k`` active experts of the family and ``kind`` for each query, merged by id.

    LoRAs are searched by the retrievers ``selection.retriever`` names (descriptions, the
    context's second LoRA retriever, or both); a candidate keeps its best similarity per
    query and to the whole prompt.
    """
    found: dict[str, Candidate] = {}
    family = ctx.settings.family
    for tool, find, vectors in _retrievers(ctx, kind):
        hit_ids: list[str] = []
        for label, vector in queries.items():
            hits = _traced(
                ctx,
                node,
                tool,
                {"query": label, "k": k, "kind": kind.value, "base": family.value},
                lambda v=vector, f=find: f(v, k),
                lambda out: [{"id": e.id, "similarity": round(s, 4)} for e, s in out],
            )
            for expert, sim in hits:
                if expert.base is not family or not expert.is_active:
                    continue  # the index filters these; the guard keeps the promise regardless
                if expert.id not in found:
                    found[expert.id] = _candidate(expert)
                matches = found[expert.id].matches
                matches[label] = max(matches.get(label, -1.0), round(float(sim), 4))
                hit_ids.append(expert.id)
        for expert_id, v in vectors(list(dict.fromkeys(hit_ids))).items():
            candidate = found[expert_id]
            similarity = round(float(v @ prompt_vector), 4)
            candidate.prompt_similarity = max(candidate.prompt_similarity, similarity)
    return list(found.values())


Finder = Callable[[np.ndarray, int], list[tuple[Expert, float]]]


def _retrievers(
    ctx: SelectionContext, kind: ExpertKind
) -> list[tuple[str, Finder, Callable[[list[str]], dict[str, np.ndarray]]]]:
    """(trace name, top-k search, vectors by id) of each retriever used for ``kind``."""
    family = ctx.settings.family
    mode = ctx.settings.retriever if kind is ExpertKind.PEFT else "description"
    found = []
    if mode in ("description", "both"):
        found.append(
            (
                "search_experts",
                lambda v, k: ctx.graph.search(v, k, kind=kind, base=family),
                lambda ids: vectors_of(ctx, ids),
            )
        )
    if mode in ("autolora", "both"):
        retriever = ctx.lora_retriever
        if retriever is None:
            raise SelectionError(
                f"selection.retriever is {mode!r} but the context has no LoRA retriever. Fix: "
                "build the context with make_context(settings, graph)"
            )
        found.append(
            (
                f"search_experts_{retriever.name}",
                lambda v, k: retriever.search(v, k, family),
                retriever.vectors,
            )
        )
    return found


def vectors_of(ctx: SelectionContext, ids: list[str]) -> dict[str, np.ndarray]:
    """The node features of experts, by id."""
    if not ids:
        return {}
    return dict(zip(ids, ctx.graph.store.embeddings(ids), strict=True))


def find_tagged_expert(ctx: SelectionContext, node: str, tag: LoraTag) -> tuple[Expert | None, str]:
    """The active expert of the family that a ``<lora:name>`` tag names, and a note.

    A tag names an expert by id, weight-file name, name or trigger word (case and
    punctuation ignored). A match of another family or a deprecated one is refused with
    a note saying so.
    """

    def lookup() -> tuple[Expert | None, str]:
        key = _norm(tag.name)
        matches = [e for e in ctx.graph.experts(kind=ExpertKind.PEFT) if key in _names(e)]
        family = ctx.settings.family
        usable = [e for e in matches if e.base is family and e.is_active]
        if usable:
            return usable[0], f"matched {usable[0].id}"
        if not matches:
            return None, f"no LoRA named {tag.name!r} in the graph; the tag is ignored"
        other = matches[0]
        if other.base is not family:
            return None, (
                f"{tag.name!r} is {other.id}, a {other.base.value} expert, not "
                f"{family.value}; the tag is ignored"
            )
        newer = f" (superseded by {other.superseded_by})" if other.superseded_by else ""
        return None, f"{tag.name!r} is {other.id}, which is deprecated{newer}; the tag is ignored"

    return _traced(
        ctx,
        node,
        "find_tagged_expert",
        {"tag": tag.raw},
        lookup,
        lambda out: {"id": out[0].id if out[0] else None, "note": out[1]},
    )


def _candidate(expert: Expert) -> Candidate:
    return Candidate(
        id=expert.id,
        name=expert.name,
        kind=expert.kind,
        description=expert.description,
        trigger_words=expert.trigger_words,
        matches={},
        prompt_similarity=-1.0,
        demo=expert.demo,
    )


def _norm(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", text.lower())


def _names(expert: Expert) -> set[str]:
    names = {expert.id, expert.name, *expert.trigger_words}
    if expert.file is not None and expert.file.path:
        names.add(PurePath(expert.file.path).stem)
    return {_norm(n) for n in names if _norm(n)}
