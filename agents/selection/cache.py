"""Embeddings of query texts kept by a warm process (the chat loop, the web UI) between
selections: boilerplate phrases ("trending on artstation", "8k") recur from prompt to
prompt, and a model's embedding of a text never changes.

Graph facts that every selection reads (expert rows, partition sizes, calibration edges
by expert) are cached with the store's arrays instead (graph.store.GraphArrays), so any
write to the graph, by this process or another, is seen by the next selection.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from weakref import WeakKeyDictionary

import numpy as np

from graph.embedding import Embedder

QUERY_CACHE_SIZE = 4096  # texts per embedder; 4096 × 384 float32 ≈ 6 MiB


class QueryEmbeddings:
    """Unit embeddings of query texts, each text embedded once per embedder (LRU)."""

    def __init__(self, size: int = QUERY_CACHE_SIZE) -> None:
        self.size = size
        self._cache: WeakKeyDictionary[Embedder, OrderedDict[str, np.ndarray]] = WeakKeyDictionary()
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def embed(self, embedder: Embedder, texts: list[str]) -> tuple[np.ndarray, int]:
        """One row per text (the texts not seen before embedded in one batch), and how
        many rows came from the cache."""
        if not texts:
            return embedder.embed([]), 0
        unique = list(dict.fromkeys(texts))
        with self._lock:
            known = self._cache.setdefault(embedder, OrderedDict())
            found = {t: known[t] for t in unique if t in known}
            for text in found:
                known.move_to_end(text)
        missing = [t for t in unique if t not in found]
        fresh = dict(zip(missing, embedder.embed(missing), strict=True)) if missing else {}
        if fresh:
            found |= fresh
            with self._lock:
                known.update(fresh)
                while len(known) > self.size:
                    known.popitem(last=False)
        return np.stack([found[t] for t in texts]), sum(t not in fresh for t in texts)


QUERY_EMBEDDINGS = QueryEmbeddings()
