"""The universal graph: store, retrieval index and embedder behind one object."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import numpy as np

from graph.archive import import_archive
from graph.config import GraphConfig
from graph.embedding import Embedder
from graph.errors import CorruptionError, DiffGraphError, GraphError, UnreadableRecordError
from graph.index import ChromaIndex, Hit, IndexEntry, make_client, numpy_topk
from graph.lock import WriterBusyError, writer_lock
from graph.records import (
    BaseFamily,
    Calibration,
    Expert,
    ExpertKind,
    ExpertStatus,
    ReferencePrompt,
)
from graph.samples import remove_samples, sample_files, write_samples
from graph.store import GraphStore
from graph.subgraph import Subgraph, extract_subgraph

log = logging.getLogger(__name__)

# Below this many experts in a searched partition, exact numpy search is faster than Chroma.
EXACT_SEARCH_LIMIT = 2048


def node_text(expert: Expert) -> str:
    """The text whose embedding is the expert's node feature."""
    if expert.description.strip():
        return expert.description
    return ". ".join(p for p in (expert.name, ", ".join(expert.tags)) if p)


def reference_prompt_id(text: str) -> str:
    """Stable id of a reference prompt: adding the same text twice is a no-op."""
    return "ref-" + hashlib.sha1(text.strip().encode()).hexdigest()[:12]


def _entry(expert: Expert, embedding: np.ndarray | None = None) -> IndexEntry:
    return IndexEntry(expert.id, expert.kind, expert.base, embedding)


class UniversalGraph:
    """Expert and reference-prompt nodes, calibration edges, and top-k retrieval.

    Writes go to the store first (the truth), then to the Chroma index, all under the data
    directory's writer lock. Readers take no lock: a stale index is rebuilt only by a
    process that can be the writer at once, otherwise searched exactly in the store.
    """

    def __init__(self, config: GraphConfig, embedder: Embedder | None = None) -> None:
        self.config = config
        self.store = GraphStore(config.store_dir)
        self._embedder = embedder

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> UniversalGraph:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = Embedder(self.config.embedding_model)
        return self._embedder

    @cached_property
    def index(self) -> ChromaIndex:
        with self._index_errors():
            client = make_client(self.config.chroma_dir, self.config.chroma_url)
            index = ChromaIndex(
                client, self.config.collection, self.store, private=not self.config.chroma_url
            )
            try:
                with writer_lock(self.config.data_dir, wait_s=0):
                    index.ensure_fresh()
            except WriterBusyError:
                log.info("another process writes the graph: searching without rebuilding it")
        return index

    @contextmanager
    def _index_errors(self) -> Iterator[None]:
        """Chroma fails in many ways (its SQLite, its Rust core, the network): name the
        index and the fix instead."""
        try:
            yield
        except DiffGraphError:
            raise
        except Exception as exc:
            if self.config.chroma_url:
                raise GraphError(
                    f"the Chroma server at {self.config.chroma_url} failed ({exc}): check that "
                    "it runs, or unset chroma_url to use the embedded index"
                ) from exc
            raise CorruptionError(
                f"the retrieval index at {self.config.chroma_dir} is damaged ({exc}): run "
                "`diffgraph graph check --repair` to rebuild it from the graph"
            ) from exc

    @contextmanager
    def _writing(self) -> Iterator[None]:
        with writer_lock(self.config.data_dir):
            yield

    # -- writes ------------------------------------------------------------------------

    def add_experts(self, experts: Sequence[Expert], embeddings: np.ndarray | None = None) -> None:
        """Register experts; their descriptions are embedded unless embeddings are given."""
        if not experts:
            return
        if embeddings is None:
            embeddings = self.embedder.embed([node_text(e) for e in experts])
        with self._writing():
            since = self.index.revision
            self.store.add_experts(zip(experts, embeddings, strict=True))
            self.index.sync(
                since,
                upserts=[
                    _entry(e, v) for e, v in zip(experts, embeddings, strict=True) if e.is_active
                ],
            )

    def add_expert(self, expert: Expert, embedding: np.ndarray | None = None) -> None:
        self.add_experts([expert], None if embedding is None else embedding[None])

    def update_expert(self, expert: Expert, reembed: bool = True) -> None:
        """Replace an expert's record; re-embed its description unless told not to."""
        embedding = self.embedder.embed_one(node_text(expert)) if reembed else None
        with self._writing():
            was_active = self.store.expert(expert.id).is_active
            since = self.index.revision
            self.store.update_expert(expert, embedding)
            if expert.is_active and (embedding is not None or not was_active):
                vector = embedding
                if vector is None:
                    vector = self.store.embeddings([expert.id])[0]
                self.index.sync(since, upserts=[_entry(expert, vector)])
            elif not expert.is_active and was_active:
                self.index.sync(since, deletes=[_entry(expert)])
            else:
                self.index.sync(since)

    def add_version(
        self, old_id: str, expert: Expert, embedding: np.ndarray | None = None
    ) -> Expert:
        """Add a new version of ``old_id`` (deprecated, history kept)."""
        if embedding is None:
            embedding = self.embedder.embed_one(node_text(expert))
        with self._writing():
            old = self.store.expert(old_id)
            since = self.index.revision
            new = self.store.add_version(old_id, expert, embedding)
            self.index.sync(since, upserts=[_entry(new, embedding)], deletes=[_entry(old)])
        return new

    def deprecate(self, expert_id: str, reason: str = "deprecated") -> None:
        with self._writing():
            expert = self.store.expert(expert_id)
            since = self.index.revision
            self.store.deprecate(expert_id, reason)
            self.index.sync(since, deletes=[_entry(expert)])

    def enable(self, expert_id: str) -> bool:
        """Re-activate a deprecated expert; False when it was active already.

        A superseded version stays retired: its newer version is the one to use.
        """
        expert = self.store.expert(expert_id)
        if expert.is_active:
            return False
        if expert.superseded_by:
            raise GraphError(
                f"expert {expert_id!r} was superseded by {expert.superseded_by!r}: use that "
                "version (or remove it first and enable this one)"
            )
        active = expert.model_copy(update={"status": ExpertStatus.ACTIVE, "status_reason": None})
        self.update_expert(active, reembed=False)
        return True

    def remove(self, expert_id: str) -> None:
        """Delete an expert, a damaged record too (its partition unknown, the index is
        then rebuilt)."""
        with self._writing():
            try:
                deletes = [_entry(self.store.expert(expert_id))]
                since = self.index.revision
            except UnreadableRecordError:
                deletes, since = [], None
            self.store.remove(expert_id)
            self.index.sync(since, deletes=deletes)
            remove_samples(self.config.data_dir, expert_id)

    def add_reference_prompts(self, texts: Iterable[str]) -> list[ReferencePrompt]:
        """Add reference prompts by text; texts already present are skipped."""
        known = {r.id for r in self.store.reference_prompts()}
        fresh: dict[str, ReferencePrompt] = {}
        for text in texts:
            text = text.strip()
            if not text:
                raise GraphError("a reference prompt is empty: give non-blank prompt texts")
            ref = ReferencePrompt(id=reference_prompt_id(text), text=text)
            if ref.id not in known:
                fresh.setdefault(ref.id, ref)
        refs = list(fresh.values())
        if refs:
            vectors = self.embedder.embed([r.text for r in refs])
            with self._writing():
                self.store.add_reference_prompts(zip(refs, vectors, strict=True))
        return refs

    def set_calibrations(self, calibrations: Iterable[Calibration]) -> None:
        with self._writing():
            self.store.set_calibrations(calibrations)

    def set_samples(self, expert_id: str, samples: dict[str, bytes]) -> None:
        """Keep calibration's sample images of ``expert_id``: ``ref id -> PNG bytes``,
        each replacing the one before (see :mod:`graph.samples`)."""
        with self._writing():
            write_samples(self.config.data_dir, expert_id, samples)

    # -- reads -------------------------------------------------------------------------

    def expert(self, expert_id: str) -> Expert:
        return self.store.expert(expert_id)

    def experts(self, **filters) -> list[Expert]:
        return self.store.experts(**filters)

    def samples(self, expert_id: str, ref_ids: Iterable[str]) -> dict[str, Path]:
        """Calibration's sample images of ``expert_id`` that exist, ``ref id -> PNG``."""
        return sample_files(self.config.data_dir, expert_id, ref_ids)

    def search(
        self,
        query: str | np.ndarray,
        k: int = 5,
        kind: ExpertKind | None = None,
        base: BaseFamily | None = None,
        status: ExpertStatus | None = ExpertStatus.ACTIVE,
        exact: bool = False,
    ) -> list[tuple[Expert, float]]:
        """Top-k experts by cosine similarity to a text or an embedding.

        Active experts come from the Chroma index; ``exact``, a status other than active,
        or a searched partition of at most ``EXACT_SEARCH_LIMIT`` experts search the store's
        arrays by brute force instead (exact, and it spares a small graph loading Chroma).
        """
        embedding = self.embedder.embed_one(query) if isinstance(query, str) else query
        return self.search_many(np.asarray(embedding)[None], k, kind, base, status, exact)[0]

    def search_many(
        self,
        embeddings: np.ndarray,
        k: int = 5,
        kind: ExpertKind | None = None,
        base: BaseFamily | None = None,
        status: ExpertStatus | None = ExpertStatus.ACTIVE,
        exact: bool = False,
    ) -> list[list[tuple[Expert, float]]]:
        """:meth:`search` for each row of ``embeddings``: one index call, one record read."""
        if not len(embeddings):
            return []
        embeddings = np.asarray(embeddings, np.float32).reshape(len(embeddings), -1)
        found = None
        if not (exact or status is not ExpertStatus.ACTIVE or self._small(kind, base)):
            found = self._index_query(embeddings, k, kind, base)
        if found is None:
            arrays = self.store.arrays()
            found = [numpy_topk(arrays, e, k, kind, base, status) for e in embeddings]
        return self._resolve(found)

    def _index_query(self, embeddings, k, kind, base) -> list[list[Hit]] | None:
        """Top-k from the index; None when it does not mirror the store (another process is
        writing, or rebuilt it under this one)."""
        if self.index.revision != self.store.revision:
            return None
        try:
            return self.index.query_many(embeddings, k, kind, base)
        except Exception as exc:  # a collection a concurrent rebuild dropped (Chroma's errors)
            log.info("retrieval index changed during the query (%s): searching exactly", exc)
            return None

    def _small(self, kind: ExpertKind | None, base: BaseFamily | None) -> bool:
        arrays = self.store.arrays()
        if len(arrays.expert_ids) <= EXACT_SEARCH_LIMIT:
            return True
        active = sum(
            n
            for (k, b, s), n in arrays.partition_sizes.items()
            if s == ExpertStatus.ACTIVE.value
            and (kind is None or k == kind.value)
            and (base is None or b == base.value)
        )
        return active <= EXACT_SEARCH_LIMIT

    def _resolve(self, found: Sequence[Sequence[Hit]]) -> list[list[tuple[Expert, float]]]:
        """The hits' records (read once for all lists); damaged ones are skipped with a
        warning."""
        ids = list(dict.fromkeys(h.expert_id for hits in found for h in hits))
        experts = {e.id: e for e in self.store.experts(ids=ids, skip_unreadable=True)}
        return [
            [(experts[h.expert_id], h.similarity) for h in hits if h.expert_id in experts]
            for hits in found
        ]

    def subgraph(self, expert_ids: Sequence[str]) -> Subgraph:
        return extract_subgraph(self.store.arrays(), expert_ids)

    # -- whole graph -------------------------------------------------------------------

    @classmethod
    def import_(cls, config: GraphConfig, path: Path, embedder: Embedder | None = None):
        """Replace the graph under ``config`` with an archive's and return it, reindexed."""
        with writer_lock(config.data_dir):
            stats = import_archive(path, config.store_dir)
            graph = cls(config, embedder)
            graph.index.ensure_fresh()
        return graph, stats
