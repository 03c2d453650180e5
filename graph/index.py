"""Chroma index over expert node features, kept in sync with the store.

The store is the truth: the index carries the store's revision in its collection
metadata and is rebuilt from the store whenever it is missing or stale.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graph.errors import GraphError
from graph.records import BaseFamily, ExpertKind, ExpertStatus
from graph.store import GraphArrays, GraphStore

log = logging.getLogger(__name__)

_BATCH = 4096


@dataclass(frozen=True)
class Hit:
    """One retrieval result: expert id and cosine similarity to the query."""

    expert_id: str
    similarity: float


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


def _where(
    kind: ExpertKind | None, base: BaseFamily | None, status: ExpertStatus | None
) -> dict | None:
    clauses = [
        {key: value.value}
        for key, value in (("kind", kind), ("base", base), ("status", status))
        if value is not None
    ]
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


class ChromaIndex:
    """Cosine top-k over expert embeddings with kind / family / status filters."""

    def __init__(self, client, collection: str, store: GraphStore) -> None:
        self._client = client
        self._name = collection
        self._store = store
        self._collection = None

    def _open(self):
        if self._collection is None:
            self._collection = self._client.get_or_create_collection(
                self._name,
                configuration={"hnsw": {"space": "cosine"}},
                embedding_function=None,
            )
        return self._collection

    @property
    def revision(self) -> int | None:
        """The store revision the index mirrors (None if it mirrors another store)."""
        meta = self._open().metadata or {}
        return meta.get("revision") if meta.get("store_uid") == self._store.uid else None

    def ensure_fresh(self) -> bool:
        """Rebuild from the store if the index is missing or stale; True when rebuilt."""
        if self.revision == self._store.revision and self._open().count() == len(self._store):
            return False
        log.info("Chroma index %r is stale; rebuilding it from the graph store", self._name)
        self.rebuild()
        return True

    def rebuild(self) -> None:
        try:
            self._client.delete_collection(self._name)
        except Exception:
            log.debug("no collection %r to delete", self._name)
        self._collection = None
        arrays = self._store.arrays()
        self._upsert_rows(arrays, range(len(arrays.expert_ids)))
        self._stamp(arrays.revision)

    def sync(self, since: int, expert_ids: Sequence[str] = (), removed: Sequence[str] = ()) -> None:
        """Mirror a store write made after revision ``since``.

        ``expert_ids`` were added or updated, ``removed`` were deleted. If the index was
        not at ``since`` it missed other writes, so it is rebuilt instead.
        """
        if self.revision != since:
            self.rebuild()
            return
        if removed:
            self._open().delete(ids=list(removed))
        if expert_ids:
            arrays = self._store.arrays()
            rows = arrays.expert_rows()
            self._upsert_rows(arrays, [rows[i] for i in expert_ids])
        self._stamp(self._store.revision)

    def _upsert_rows(self, arrays: GraphArrays, rows) -> None:
        rows = list(rows)
        collection = self._open()
        for start in range(0, len(rows), _BATCH):
            chunk = rows[start : start + _BATCH]
            collection.upsert(
                ids=[arrays.expert_ids[r] for r in chunk],
                embeddings=arrays.expert_x[chunk],
                metadatas=[
                    {
                        "kind": str(arrays.expert_kind[r]),
                        "base": str(arrays.expert_base[r]),
                        "status": str(arrays.expert_status[r]),
                    }
                    for r in chunk
                ],
            )

    def _stamp(self, revision: int) -> None:
        self._open().modify(metadata={"revision": revision, "store_uid": self._store.uid})

    def query(
        self,
        embedding: np.ndarray,
        k: int = 5,
        kind: ExpertKind | None = None,
        base: BaseFamily | None = None,
        status: ExpertStatus | None = ExpertStatus.ACTIVE,
    ) -> list[Hit]:
        if k < 1:
            raise GraphError(f"k must be at least 1, got {k}")
        collection = self._open()
        result = collection.query(
            query_embeddings=np.asarray(embedding, np.float32).reshape(1, -1),
            n_results=min(k, max(collection.count(), 1)),
            where=_where(kind, base, status),
            include=["distances"],
        )
        return [
            Hit(expert_id=i, similarity=1.0 - float(d))
            for i, d in zip(result["ids"][0], result["distances"][0], strict=True)
        ]


def numpy_topk(
    arrays: GraphArrays,
    embedding: np.ndarray,
    k: int = 5,
    kind: ExpertKind | None = None,
    base: BaseFamily | None = None,
    status: ExpertStatus | None = ExpertStatus.ACTIVE,
) -> list[Hit]:
    """Exact brute-force cosine top-k over the store's arrays (the index's peer)."""
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
