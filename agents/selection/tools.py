"""The agent's tools over the universal graph: counts, embeddings, top-k search, tag lookup.

Each call is recorded in the trace as a ``tool_call`` event.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import TypeVar

import numpy as np

from agents.prompt_syntax import LoraTag
from agents.selection.cache import QUERY_EMBEDDINGS
from agents.selection.errors import SelectionError
from agents.selection.needs import LexicalIndex
from agents.selection.policy import NeedEvidence, background_stats, calibration_evidence
from agents.selection.state import Candidate, SelectionContext
from graph.records import Expert, ExpertKind, ExpertStatus

log = logging.getLogger(__name__)

# Generic prompt phrases: what an expert's description usually scores against text that
# asks for no skill in particular (subjects, scenes and the boilerplate of shared prompts).
BACKGROUND = (
    "a dog", "a cat", "a woman", "a man", "an old man", "a young girl", "two people talking",
    "a house", "a car", "a tree", "a bird on a branch", "a horse", "a city street",
    "a mountain", "a river", "a beach", "a forest", "a table", "a chair", "a flower",
    "a bowl of fruit", "a bicycle", "a boat", "a bridge", "a window", "a road", "the sky",
    "a garden", "a kitchen", "a school", "a train station", "a market", "a field of grass",
    "a person walking", "a child playing", "a family", "a soldier", "a king", "a robot",
    "a monster", "a building", "a village", "a lake", "a desert", "snow", "clouds",
    "standing", "sitting", "running", "smiling", "looking at the camera", "full body",
    "close-up", "wide shot", "from above", "in the background", "at night", "in the morning",
    "red", "blue", "green", "black and white", "colorful", "big", "small", "beautiful",
    "cute", "old", "new", "happy", "sad", "epic", "masterpiece", "best quality",
    "trending on artstation", "artstation", "8k", "4k", "hd", "award winning", "unreal engine",
    "octane render", "by greg rutkowski", "by artgerm", "art by wlop", "illustration",
    "digital art", "highly detailed", "intricate", "elegant", "smooth", "detailed",
    "professional", "high resolution", "wallpaper", "pixiv", "deviantart", "cgsociety",
    "a portrait", "a landscape", "a scene", "an image", "a picture of something",
)  # fmt: skip
_BACKGROUND_CACHE: dict[tuple[str, str], np.ndarray] = {}
_LEXICAL_CACHE: dict[tuple[str, int, str], LexicalIndex] = {}
_TAG_CACHE: dict[tuple[str, int], dict[str, list[str]]] = {}

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
        for (_, base, status), n in ctx.graph.store.arrays().partition_sizes.items():
            if status == ExpertStatus.ACTIVE.value:
                counts[base] = counts.get(base, 0) + n
        return counts

    return _traced(ctx, node, "count_active_experts", None, count)


def embed(ctx: SelectionContext, node: str, texts: list[str]) -> np.ndarray:
    """Unit embeddings of the queries (one batch for the texts this process has not
    embedded before)."""
    vectors, _ = _traced(
        ctx,
        node,
        "embed",
        {"texts": texts},
        lambda: QUERY_EMBEDDINGS.embed(ctx.graph.embedder, texts),
        lambda out: {"shape": list(out[0].shape), "cached": out[1]},
    )
    return vectors


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
    labels = list(queries)
    matrix = np.stack(list(queries.values())) if queries else np.zeros((0, 0), np.float32)
    for tool, find, vectors in _retrievers(ctx, kind):
        results = _traced(
            ctx,
            node,
            tool,
            {"queries": labels, "k": k, "kind": kind.value, "base": family.value},
            lambda f=find: f(matrix, k),
            lambda out: {
                label: [{"id": e.id, "similarity": round(s, 4)} for e, s in hits]
                for label, hits in zip(labels, out, strict=True)
            },
        )
        hit_ids: list[str] = []
        for label, hits in zip(labels, results, strict=True):
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


# top-k for each row of a matrix of queries
Finder = Callable[[np.ndarray, int], list[list[tuple[Expert, float]]]]


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
                lambda m, k: ctx.graph.search_many(m, k, kind=kind, base=family),
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
                lambda m, k: [retriever.search(v, k, family) for v in m],
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
        matches = ctx.graph.experts(ids=_lora_names(ctx).get(_norm(tag.name), []))
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


def _lora_names(ctx: SelectionContext) -> dict[str, list[str]]:
    """Every LoRA (any family or status) by each name a tag may use, ids in graph order
    (one build per graph revision and process)."""
    store = ctx.graph.store
    key = (str(store.root), store.revision)
    names = _TAG_CACHE.get(key)
    if names is None:
        names = {}
        for expert in ctx.graph.experts(kind=ExpertKind.PEFT):
            for name in _names(expert):
                names.setdefault(name, []).append(expert.id)
        _TAG_CACHE.clear()
        _TAG_CACHE[key] = names
    return names


def lexical_index(ctx: SelectionContext) -> LexicalIndex:
    """Names, trigger words and tags of the family's active experts (one build per graph
    revision and process)."""
    store = ctx.graph.store
    key = (str(store.root), store.revision, ctx.settings.family.value)
    index = _LEXICAL_CACHE.get(key)
    if index is None:
        experts = ctx.graph.experts(base=ctx.settings.family, status=ExpertStatus.ACTIVE)
        index = LexicalIndex.build(experts)
        _LEXICAL_CACHE.clear()
        _LEXICAL_CACHE[key] = index
    return index


def named_candidates(
    ctx: SelectionContext, node: str, text: str, kind: ExpertKind
) -> list[Candidate]:
    """Active experts of the family and ``kind`` whose trigger word or name ``text`` uses."""

    def lookup() -> list[Candidate]:
        index = lexical_index(ctx)
        ids = [i for i in index.named_in(text) if index.cards[i].kind is kind]
        return [_candidate(e) for e in ctx.graph.experts(ids=ids)] if ids else []

    return _traced(
        ctx,
        node,
        "find_named_experts",
        {"kind": kind.value},
        lookup,
        lambda out: [c.id for c in out],
    )


def background_vectors(ctx: SelectionContext) -> np.ndarray:
    """Embeddings of :data:`BACKGROUND`, cached in memory and beside the embedding model's
    ONNX export (so a cold start does not embed them again)."""
    embedder = ctx.graph.embedder
    digest = hashlib.sha256("\n".join(BACKGROUND).encode()).hexdigest()[:12]
    key = (embedder.name, digest)
    if key in _BACKGROUND_CACHE:
        return _BACKGROUND_CACHE[key]
    cache_dir = getattr(embedder, "cache_dir", None)
    name = re.sub(r"[^A-Za-z0-9.-]+", "-", embedder.name)[-60:]
    path = Path(cache_dir) / "selection" / f"background-{name}-{digest}.npy" if cache_dir else None
    vectors = None
    if path is not None and path.exists():
        try:
            vectors = np.load(path)
        except (OSError, ValueError):
            log.warning("unreadable cache %s: embedding the background phrases again", path)
    if vectors is None or vectors.shape[0] != len(BACKGROUND):
        vectors = embedder.embed(list(BACKGROUND))
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
                np.save(tmp, vectors)
                os.replace(tmp, path)
            except OSError as exc:
                log.warning("could not cache the background phrases in %s: %s", path, exc)
    _BACKGROUND_CACHE[key] = vectors
    return vectors


def need_evidence(
    ctx: SelectionContext,
    node: str,
    candidates: list[Candidate],
    phrases: list[str],
    phrase_vectors: list[np.ndarray],
    avoid: list[str],
    avoid_vectors: list[np.ndarray],
    prompt_vector: np.ndarray | None,
) -> NeedEvidence:
    """What the need-aware filter weighs for these candidates (policy.NeedEvidence).

    With ``selection.retriever`` ``autolora`` a LoRA is weighed by its weight embedding
    (the vector it was found by), not by its description; ``both`` weighs descriptions.
    """

    def gather() -> NeedEvidence:
        ids = list(dict.fromkeys(c.id for c in candidates))
        vectors = vectors_of(ctx, ids)
        if ctx.settings.retriever == "autolora" and ctx.lora_retriever is not None:
            loras = [c.id for c in candidates if c.kind is ExpertKind.PEFT]
            vectors |= ctx.lora_retriever.vectors(list(dict.fromkeys(loras)))
        dim = next(iter(vectors.values())).shape[0] if vectors else 0
        return NeedEvidence(
            phrases=phrases,
            phrase_vectors=np.asarray(phrase_vectors, np.float32).reshape(len(phrases), dim),
            avoid=avoid,
            avoid_vectors=np.asarray(avoid_vectors, np.float32).reshape(len(avoid), dim),
            vectors=vectors,
            background=background_stats(vectors, background_vectors(ctx)) if ids else {},
            lexical=lexical_index(ctx),
            calibration=_calibration(ctx, prompt_vector, ids),
        )

    return _traced(
        ctx,
        node,
        "need_evidence",
        {"candidates": len(candidates), "phrases": len(phrases), "avoid": avoid},
        gather,
        lambda out: {"calibrated": {k: round(v, 3) for k, v in out.calibration.items()}},
    )


def _calibration(
    ctx: SelectionContext, prompt_vector: np.ndarray | None, ids: list[str]
) -> dict[str, float]:
    """Standardised calibration scores of ``ids`` on reference prompts near the prompt."""
    arrays = ctx.graph.store.arrays()
    if prompt_vector is None or not ids or not arrays.edge_index.size:
        return {}
    return calibration_evidence(
        prompt_vector,
        ids,
        arrays.ref_x,
        arrays.edge_expert_ids,
        arrays.edge_index[1],
        arrays.edge_attr,
    )
