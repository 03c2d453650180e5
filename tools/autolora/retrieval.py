"""LoRA retrieval by weight embeddings: the AutoLoRA retriever over the universal graph.

Every active LoRA expert with a local weights file is embedded by the trained weight
encoder (new LoRAs need no retraining); a query is a text embedding from the frozen
text encoder the weight encoder was aligned to, and hits are ranked by cosine
similarity. Embeddings are cached on disk by weights-file content and encoder, so a
LoRA is read once per trained encoder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graph.errors import DiffGraphError
from graph.records import BaseFamily, Expert, ExpertKind, ExpertStatus
from tools.autolora.config import TrainingRecord
from tools.autolora.data import expert_weights, read_expert
from tools.autolora.encoder import WeightEncoder
from tools.autolora.errors import AutoLoRACheckpointError, AutoLoRAError
from tools.autolora.tokens import lora_layers

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedLoras:
    """The embedded LoRAs of one family: ``vectors[i]`` is expert ``ids[i]``'s."""

    ids: list[str]
    vectors: np.ndarray


class AutoLoraRetriever:
    """Weight-embedding retrieval of LoRA experts (see the module doc).

    ``skipped`` maps expert ids that could not be embedded to the reason.
    """

    name = "autolora"

    def __init__(
        self,
        graph,
        encoder: WeightEncoder,
        record: TrainingRecord | None = None,
        *,
        cache: EmbeddingCache | None = None,
        allow_pickle: bool = False,
    ) -> None:
        self.graph = graph
        self.encoder = encoder.eval()
        self.record = record or TrainingRecord()
        self.cache = cache
        self.allow_pickle = allow_pickle
        self.skipped: dict[str, str] = {}
        self._memory: dict[str, np.ndarray] = {}
        self._families: dict[BaseFamily, EmbeddedLoras] = {}

    @property
    def note(self) -> str | None:
        """A line for results when the encoder was trained on demo material."""
        if self.record.demo:
            return "LoRA retrieval used the AutoLoRA weight encoder trained on DEMO data"
        return None

    def embeddings(self, family: BaseFamily) -> EmbeddedLoras:
        """Every active LoRA of ``family`` that has weights, embedded (cached)."""
        if family not in self._families:
            experts = self.graph.experts(
                kind=ExpertKind.PEFT, base=family, status=ExpertStatus.ACTIVE
            )
            found = {e.id: v for e in experts if (v := self.vector(e)) is not None}
            dim = self.encoder.config.embed_dim
            vectors = np.stack(list(found.values())) if found else np.zeros((0, dim), np.float32)
            self._families[family] = EmbeddedLoras(list(found), vectors)
            if self.cache is not None:
                self.cache.flush()
        return self._families[family]

    def search(self, query: np.ndarray, k: int, family: BaseFamily) -> list[tuple[Expert, float]]:
        """The ``k`` LoRAs of ``family`` whose weight embeddings are closest to ``query``."""
        embedded = self.embeddings(family)
        if not embedded.ids or k <= 0:
            return []
        query = np.asarray(query, np.float32)
        sims = embedded.vectors @ (query / max(float(np.linalg.norm(query)), 1e-12))
        order = np.argsort(-sims, kind="stable")[:k]
        experts = self.graph.experts(ids=[embedded.ids[i] for i in order])
        return [(e, float(sims[i])) for e, i in zip(experts, order, strict=True)]

    def vectors(self, ids: list[str]) -> dict[str, np.ndarray]:
        """Weight embeddings of the given experts (those that have one)."""
        experts = self.graph.experts(ids=list(ids))
        out = {e.id: v for e in experts if (v := self.vector(e)) is not None}
        if self.cache is not None:
            self.cache.flush()
        return out

    def vector(self, expert: Expert) -> np.ndarray | None:
        """The weight embedding of one LoRA expert; None (reason in ``skipped``) without
        a readable weights file."""
        if expert.kind is not ExpertKind.PEFT:
            return None
        if expert.id in self._memory:
            return self._memory[expert.id]
        try:
            path = expert_weights(expert)
        except AutoLoRAError as exc:
            self.skipped[expert.id] = str(exc)
            return None
        key = content_key(path, expert.file.sha256)
        vector = self.cache.get(key) if self.cache is not None else None
        if vector is None:
            try:
                vector = self.encoder.embed([lora_layers(read_expert(expert, self.allow_pickle))])
            except DiffGraphError as exc:
                self.skipped[expert.id] = str(exc)
                logger.warning("AutoLoRA: %s cannot be embedded: %s", expert.id, exc)
                return None
            vector = vector[0].numpy()
            if self.cache is not None:
                self.cache.put(key, vector)
        self._memory[expert.id] = vector
        return vector


def content_key(path: Path, sha256: str | None) -> str:
    """The cache key of a weights file: its recorded SHA-256, else path, size and mtime."""
    if sha256:
        return sha256
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


class EmbeddingCache:
    """Embeddings by weights-file key for one encoder, in one ``.npz`` file.

    A cache written for another encoder (``digest``) is ignored and replaced.
    """

    def __init__(self, path: Path, digest: str) -> None:
        self.path = Path(path)
        self.digest = digest
        self._vectors: dict[str, np.ndarray] = {}
        self._dirty = False
        if self.path.is_file():
            try:
                with np.load(self.path, allow_pickle=False) as data:
                    if str(data["digest"]) == digest:
                        self._vectors = dict(
                            zip(data["keys"].tolist(), data["vectors"], strict=True)
                        )
            except (OSError, KeyError, ValueError) as exc:
                logger.warning("ignoring unreadable AutoLoRA embedding cache %s: %s", path, exc)

    def get(self, key: str) -> np.ndarray | None:
        return self._vectors.get(key)

    def put(self, key: str, vector: np.ndarray) -> None:
        self._vectors[key] = np.asarray(vector, np.float32)
        self._dirty = True

    def flush(self) -> None:
        """Write the cache atomically if anything was added."""
        if not self._dirty:
            return
        from tools.weights.files import atomic_path

        keys = list(self._vectors)
        with atomic_path(self.path) as tmp, tmp.open("wb") as handle:
            np.savez(
                handle,
                digest=np.array(self.digest),
                keys=np.array(keys, dtype=str),
                vectors=np.stack([self._vectors[k] for k in keys]),
            )
        self._dirty = False


def make_retriever(settings, graph) -> AutoLoraRetriever:
    """The retriever of the trained encoder named by ``settings`` (tools.settings)."""
    from tools.autolora.checkpoint import load_encoder
    from tools.autolora.paths import embeddings_cache_path, encoder_path
    from tools.weights.files import sha256_file

    path = encoder_path(settings)
    encoder, record = load_encoder(path)
    text_model = encoder.config.text_model
    if text_model != graph.embedder.name:
        raise AutoLoRACheckpointError(
            f"the AutoLoRA encoder {path} was aligned to the text encoder {text_model}, the "
            f"graph embeds queries with {graph.embedder.name}. Fix: retrain it with "
            "`diffgraph train-autolora encoder` under the current embedding_model"
        )
    cache = EmbeddingCache(embeddings_cache_path(settings), sha256_file(path))
    return AutoLoraRetriever(
        graph, encoder, record, cache=cache, allow_pickle=settings.allow_pickle
    )
