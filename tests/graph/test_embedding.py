"""The ONNX MiniLM gives the embeddings of sentence-transformers, and loads without torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from graph.embedding import Embedder, _batches
from graph.errors import GraphError

TEXTS = [
    "a watercolor painting of a lighthouse on a cliff at golden hour",
    "Captain Nova, an original character: a space pilot with short silver hair",
    "portrait of a female knight, intricate, elegant, highly detailed, artstation, "
    "concept art, sharp focus, art by artgerm and greg rutkowski and alphonse mucha",
    "NO NEON!!",
    "un retrato de una mujer, acuarela",
    "一只猫坐在窗台上",
    "🐱 cat face",
    "x",
    "",
    "wtrclr style " * 200,  # longer than the 256-token window: truncated as upstream does
]


def test_onnx_matches_sentence_transformers(embedder):
    assert embedder.backend == "onnx"
    reference = Embedder(backend="torch").embed(TEXTS)
    got = embedder.embed(TEXTS)
    assert got.shape == reference.shape == (len(TEXTS), 384)
    assert got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosines = (got * reference).sum(axis=1)
    assert cosines.min() >= 0.9999
    # batching and order do not change a text's embedding
    single = np.stack([embedder.embed_one(t) for t in TEXTS[:3]])
    np.testing.assert_allclose(single, got[:3], atol=1e-5)


def test_the_export_is_cached_and_a_broken_file_is_replaced(embedder, tmp_path):
    fresh = Embedder(cache_dir=tmp_path)
    path = fresh.onnx_path
    assert path.parent == tmp_path / "onnx"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an onnx model")  # e.g. a copy cut short
    vector = fresh.embed_one(TEXTS[0])
    assert path.stat().st_size > 1_000_000
    np.testing.assert_allclose(vector, embedder.embed_one(TEXTS[0]), atol=1e-5)
    assert Embedder(cache_dir=tmp_path).onnx_path == path  # same model: same file


def test_queries_load_neither_torch_nor_sentence_transformers(embedder):
    embedder.embed_one("warm the cache")  # the export exists from here on
    code = (
        "import sys; from graph.embedding import Embedder; "
        "Embedder().embed(['a cat']); "
        "print(sorted(m for m in ('torch', 'sentence_transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_onnx_backend_needs_a_fast_tokenizer(tmp_path):
    (tmp_path / "model").mkdir()
    with pytest.raises(GraphError, match=r"no tokenizer\.json"):
        Embedder(tmp_path / "model", backend="onnx")
    assert Embedder(tmp_path / "model").backend == "torch"


def test_a_long_text_after_short_ones_is_run_in_a_batch_of_its_own():
    # rows by token count: the prompt (26 tokens) and its short phrases
    assert [b.tolist() for b in _batches([26, 4, 4, 6, 5], 64)] == [[1, 2, 4, 3], [0]]
    assert [len(b) for b in _batches([5] * 10, 4)] == [4, 4, 2]
    assert _batches([], 64) == []


def test_the_onnx_threads_can_be_bounded(embedder):
    one = Embedder(threads=1)
    assert one._onnx.session.get_session_options().intra_op_num_threads == 1
    np.testing.assert_allclose(one.embed(TEXTS[:3]), embedder.embed(TEXTS[:3]), atol=1e-6)
