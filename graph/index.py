"""Chroma index over the active experts, kept in sync with the store.

The store is the truth. The index holds one collection per (kind, base family) so that a
filtered query is a plain nearest-neighbour search (Chroma's metadata filters cost tens of
milliseconds); deprecated experts are not indexed, and queries that include them run
exactly over the store's arrays. The store records which collections and revision the
index mirrors; a missing or stale index is rebuilt from the store. Collections are named
after the graph's id, so one Chroma server holds the indexes of many graphs. A rebuild
fills new collections (a new generation) and then switches the store's record to them, so
a reader never searches a half-built index.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np

from graph.errors import GraphError
from graph.records import BaseFamily, ExpertKind, ExpertStatus
from graph.store import GraphArrays, GraphStore

log = logging.getLogger(__name__)

_BATCH = 4096
PARTITIONS = tuple(product(ExpertKind, BaseFamily))


@dataclass(frozen=True)
class Hit:
    """One retrieval result: expert id and cosine similarity to the query."""

    expert_id: str
    similarity: float


@dataclass(frozen=True)
class IndexEntry:
    """An active expert as the index stores it."""

    expert_id: str
    kind: ExpertKind
    base: BaseFamily
    embedding: np.ndarray | None = None


def make_client(chroma_dir: Path, chroma_url: str | None):
    """An embedded ``PersistentClient``, or an ``HttpClient`` when a URL is configured."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if chroma_url:
        from urllib.parse import urlparse

        url = urlparse(chroma_url)
        return chromadb.HttpClient(
            host=url.hostname or "localhost",
            port=url.port or (443 if url.scheme == "https" else 8000),
            ssl=url.scheme == "https",
            settings=settings,
        )
    chroma_dir.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(chroma_dir), settings=settings)


class ChromaIndex:
    """Cosine top-k over active expert embeddings, one collection per kind × family.

    Collection names carry the graph's id and the index generation
    (``experts-<id>-peft-sd15-<generation>``), so graphs of several projects share one
    Chroma server without overwriting each other, and switching between them rebuilds
    nothing. A ``private`` client (the embedded one under the graph's data folder) holds
    this graph only: a rebuild there also drops the collections of earlier graphs (older
    names, a graph replaced by an import).
    """

    def __init__(self, client, prefix: str, store: GraphStore, private: bool = False) -> None:
        self._client = client
        self._family = prefix
        self._private = private
        self._prefix = f"{prefix}-{store.uid[:16]}"
        self._store = store
        self._collections: dict[str, object] = {}

    @property
    def _generation(self) -> str:
        """The generation the store's record points at ("" for indexes built before them)."""
        return (self._store.index_stamp or {}).get("generation", "")

    def _name(self, kind: ExpertKind, base: BaseFamily, generation: str | None = None) -> str:
        generation = self._generation if generation is None else generation
        return f"{self._prefix}-{kind.value}-{base.value}" + (f"-{generation}" * bool(generation))

    def _collection(self, kind: ExpertKind, base: BaseFamily, generation: str | None = None):
        name = self._name(kind, base, generation)
        if name not in self._collections:
            self._collections[name] = self._client.get_or_create_collection(
                name, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
            )
        return self._collections[name]

    def _existing(self) -> set[str]:
        """Names of the client's collections (older Chroma lists objects, newer names)."""
        return {c.name if hasattr(c, "name") else c for c in self._client.list_collections()}

    def _ids(self, generation: str | None = None) -> dict[str, str]:
        generation = self._generation if generation is None else generation
        return {
            self._name(k, b, generation): str(self._collection(k, b, generation).id)
            for k, b in PARTITIONS
        }

    @property
    def revision(self) -> int | None:
        """The store revision the index mirrors, or None if it mirrors something else."""
        stamp = self._store.index_stamp
        if not stamp or stamp.get("collections") != self._ids(stamp.get("generation", "")):
            return None
        return stamp.get("revision")

    def ensure_fresh(self) -> bool:
        """Rebuild from the store if the index is missing or stale; True when rebuilt."""
        active = int((self._store.arrays().expert_status == ExpertStatus.ACTIVE.value).sum())
        indexed = sum(self._collection(k, b).count() for k, b in PARTITIONS)
        if self.revision == self._store.revision and indexed == active:
            return False
        log.info("retrieval index is missing or stale; rebuilding it from the graph store")
        self.rebuild()
        return True

    def rebuild(self) -> None:
        """Fill a new generation of collections, switch to it, then drop the older ones."""
        generation = uuid.uuid4().hex[:8]
        arrays = self._store.arrays()
        for kind, base in PARTITIONS:
            rows = np.flatnonzero(
                (arrays.expert_kind == kind.value)
                & (arrays.expert_base == base.value)
                & (arrays.expert_status == ExpertStatus.ACTIVE.value)
            )
            collection = self._collection(kind, base, generation)
            for start in range(0, len(rows), _BATCH):
                chunk = rows[start : start + _BATCH]
                collection.upsert(
                    ids=[arrays.expert_ids[r] for r in chunk], embeddings=arrays.expert_x[chunk]
                )
        self._stamp(arrays.revision, generation)
        current = set(self._ids())
        existing = self._existing()
        for name in sorted(existing - current):
            earlier = self._private and name.startswith(f"{self._family}-")
            if name.startswith(f"{self._prefix}-") or earlier:
                self._client.delete_collection(name)
                self._collections.pop(name, None)

    def sync(
        self,
        since: int | None,
        upserts: Sequence[IndexEntry] = (),
        deletes: Sequence[IndexEntry] = (),
    ) -> None:
        """Mirror a store write made when the store was at revision ``since``.

        If the index did not mirror revision ``since`` it missed other writes and is
        rebuilt instead.
        """
        if since is None or self.revision != since:
            self.rebuild()
            return
        for entry in deletes:
            self._collection(entry.kind, entry.base).delete(ids=[entry.expert_id])
        for (kind, base), group in _group(upserts).items():
            self._collection(kind, base).upsert(
                ids=[e.expert_id for e in group],
                embeddings=np.stack([np.asarray(e.embedding, np.float32) for e in group]),
            )
        self._stamp(self._store.revision)

    def _stamp(self, revision: int, generation: str | None = None) -> None:
        generation = self._generation if generation is None else generation
        self._store.set_index_stamp(
            {"revision": revision, "generation": generation, "collections": self._ids(generation)}
        )

    def query(
        self,
        embedding: np.ndarray,
        k: int = 5,
        kind: ExpertKind | None = None,
        base: BaseFamily | None = None,
    ) -> list[Hit]:
        """Top-k active experts, optionally of one kind and/or family."""
        return self.query_many(np.asarray(embedding, np.float32).reshape(1, -1), k, kind, base)[0]

    def query_many(
        self,
        embeddings: np.ndarray,
        k: int = 5,
        kind: ExpertKind | None = None,
        base: BaseFamily | None = None,
    ) -> list[list[Hit]]:
        """:meth:`query` for each row of ``embeddings``, in one Chroma call per partition."""
        if k < 1:
            raise GraphError(f"k must be at least 1, got {k}")
        if not len(embeddings):
            return []
        q = np.asarray(embeddings, np.float32).reshape(len(embeddings), -1)
        hits: list[list[Hit]] = [[] for _ in range(len(q))]
        for part_kind, part_base in PARTITIONS:
            if kind not in (None, part_kind) or base not in (None, part_base):
                continue
            collection = self._collection(part_kind, part_base)
            size = collection.count() if (kind is None or base is None) else None
            if size == 0:
                continue
            result = collection.query(query_embeddings=q, n_results=k, include=["distances"])
            for found, ids, distances in zip(hits, result["ids"], result["distances"], strict=True):
                found += [
                    Hit(expert_id=i, similarity=1.0 - float(d))
                    for i, d in zip(ids, distances, strict=True)
                ]
        for found in hits:
            found.sort(key=lambda h: -h.similarity)
        return [found[:k] for found in hits]

    def entries(self) -> dict[str, tuple[ExpertKind, BaseFamily]]:
        """Every expert id the current collections hold, with its partition (reads only:
        creates no collection)."""
        existing = self._existing()
        found: dict[str, tuple[ExpertKind, BaseFamily]] = {}
        for kind, base in PARTITIONS:
            name = self._name(kind, base)
            if name in existing:
                collection = self._client.get_collection(name, embedding_function=None)
                found.update(dict.fromkeys(collection.get(include=[])["ids"], (kind, base)))
        return found


def _group(entries: Sequence[IndexEntry]) -> dict[tuple[ExpertKind, BaseFamily], list]:
    groups: dict[tuple[ExpertKind, BaseFamily], list[IndexEntry]] = {}
    for entry in entries:
        groups.setdefault((entry.kind, entry.base), []).append(entry)
    return groups


def numpy_topk(
    arrays: GraphArrays,
    embedding: np.ndarray,
    k: int = 5,
    kind: ExpertKind | None = None,
    base: BaseFamily | None = None,
    status: ExpertStatus | None = ExpertStatus.ACTIVE,
) -> list[Hit]:
    """Exact brute-force cosine top-k over the store's arrays."""
    if k < 1:
        raise GraphError(f"k must be at least 1, got {k}")
    mask = np.ones(len(arrays.expert_ids), bool)
    for column, value in (
        (arrays.expert_kind, kind),
        (arrays.expert_base, base),
        (arrays.expert_status, status),
    ):
        if value is not None:
            mask &= column == value.value
    rows = np.flatnonzero(mask)
    if not len(rows):
        return []
    x = arrays.expert_x[rows]
    q = np.asarray(embedding, np.float32).reshape(-1)
    sims = (x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q) + 1e-12)
    k = min(k, len(rows))
    top = np.argpartition(-sims, k - 1)[:k]
    top = top[np.argsort(-sims[top], kind="stable")]
    return [Hit(arrays.expert_ids[rows[i]], float(sims[i])) for i in top]
