"""Chroma retrieval kept in sync with the store, with the real packaged MiniLM."""

from __future__ import annotations

import numpy as np
import pytest

from graph.errors import GraphError
from graph.index import numpy_topk
from graph.records import BaseFamily, ExpertKind, ExpertStatus
from graph.store import GraphStore
from graph.universal import UniversalGraph
from tests.graph.helpers import expert

CATALOGUE = [
    ("watercolor", "peft", "watercolor painting style with soft washes and paper texture"),
    ("red-hair", "peft", "vivid red hair, detailed strands for portraits of women"),
    ("flamingo", "peft", "red flamingo birds standing in a lagoon"),
    ("cyberpunk", "peft", "neon cyberpunk city at night, rain and holograms"),
    ("eyes", "peft", "detailed eyes and eyelashes, sharp iris detail for close-up faces"),
    ("realistic", "ckpt", "photorealistic general purpose checkpoint for portraits and scenes"),
    ("anime", "ckpt", "anime illustration checkpoint with clean line art"),
    ("xl-watercolor", "peft", "watercolor painting style"),
]


@pytest.fixture(autouse=True)
def _through_chroma(monkeypatch):
    """These tests are about the Chroma index: search it even though the graph is small."""
    monkeypatch.setattr("graph.universal.EXACT_SEARCH_LIMIT", 0)


@pytest.fixture
def graph(graph_config, embedder):
    with UniversalGraph(graph_config, embedder=embedder) as g:
        g.add_experts(
            [
                expert(i, kind=k, base="sdxl" if i.startswith("xl") else "sd15", description=d)
                for i, k, d in CATALOGUE
            ]
        )
        yield g


def test_real_embedding_round_trip(graph, embedder):
    x = graph.store.embeddings(["watercolor"])[0]
    assert x.shape == (384,) and abs(np.linalg.norm(x) - 1) < 1e-5
    again = embedder.embed([CATALOGUE[0][2]])[0]
    np.testing.assert_allclose(x, again, atol=1e-6)


def test_search_finds_the_skill_with_filters(graph):
    hits = graph.search(
        "a young woman with long red hair", k=2, kind=ExpertKind.PEFT, base=BaseFamily.SD15
    )
    assert hits[0][0].id == "red-hair"
    assert graph.search("watercolor", k=1, base=BaseFamily.SDXL)[0][0].id == "xl-watercolor"
    ckpts = graph.search("an anime girl", k=5, kind=ExpertKind.CKPT)
    assert ckpts[0][0].id == "anime" and len(ckpts) == 2


def test_chroma_agrees_with_brute_force(graph, embedder):
    for query in ("city at night", "portrait with sharp eyes", "painting"):
        q = embedder.embed_one(query)
        chroma = graph.index.query(q, k=4, kind=ExpertKind.PEFT, base=BaseFamily.SD15)
        exact = numpy_topk(graph.store.arrays(), q, k=4, kind=ExpertKind.PEFT, base=BaseFamily.SD15)
        assert [h.expert_id for h in chroma] == [h.expert_id for h in exact]
        np.testing.assert_allclose(
            [h.similarity for h in chroma], [h.similarity for h in exact], atol=1e-4
        )


def test_deprecated_and_removed_experts_leave_results(graph):
    graph.deprecate("red-hair", "superseded")
    assert "red-hair" not in [e.id for e, _ in graph.search("red hair", k=8)]
    assert "red-hair" in [e.id for e, _ in graph.search("red hair", k=8, status=None)]
    graph.remove("flamingo")
    assert "flamingo" not in [e.id for e, _ in graph.search("flamingo", k=8, status=None)]


def test_stale_index_is_rebuilt_from_the_store(graph, graph_config, embedder):
    assert graph.index.revision == graph.store.revision
    with GraphStore(graph_config.store_dir) as other:  # a write that bypasses the index
        other.add_expert(
            expert("late", description="knight in shining armour"),
            embedder.embed_one("knight in shining armour"),
        )
    with UniversalGraph(graph_config, embedder=embedder) as fresh:
        assert fresh.search("armoured knight", k=1)[0][0].id == "late"


def test_missing_index_is_rebuilt(graph, graph_config, embedder):
    import shutil

    from chromadb.api.client import SharedSystemClient

    graph.close()
    shutil.rmtree(graph_config.chroma_dir)
    SharedSystemClient.clear_system_cache()  # as a new process would start
    with UniversalGraph(graph_config, embedder=embedder) as fresh:
        assert fresh.search("neon city", k=1)[0][0].id == "cyberpunk"
        assert fresh.index.revision == fresh.store.revision


def test_new_version_is_searchable_and_old_is_not(graph):
    graph.add_version("eyes", expert("eyes-v2", description="detailed eyes v2, catchlights"))
    ids = [e.id for e, _ in graph.search("detailed eyes", k=3)]
    assert "eyes-v2" in ids and "eyes" not in ids
    assert graph.expert("eyes").status is ExpertStatus.DEPRECATED


def test_reference_prompts_are_deduplicated(graph):
    added = graph.add_reference_prompts(["a cat", "a dog", "a cat "])
    assert len(added) == 2
    assert graph.add_reference_prompts(["a dog"]) == []
    with pytest.raises(GraphError, match="empty"):
        graph.add_reference_prompts(["  "])


def test_k_must_be_positive(graph):
    with pytest.raises(GraphError, match="k must be at least 1"):
        graph.search("x", k=0)


def test_small_partitions_are_searched_exactly_without_chroma(graph, monkeypatch):
    monkeypatch.setattr("graph.universal.EXACT_SEARCH_LIMIT", 2048)
    with UniversalGraph(graph.config, embedder=graph.embedder) as fresh:
        hits = fresh.search("a young woman with long red hair", k=2, kind=ExpertKind.PEFT)
        assert "index" not in fresh.__dict__  # Chroma was never opened
    via_chroma = graph.search("a young woman with long red hair", k=2, kind=ExpertKind.PEFT)
    assert [e.id for e, _ in hits] == [e.id for e, _ in via_chroma]
    np.testing.assert_allclose([s for _, s in hits], [s for _, s in via_chroma], atol=1e-4)


@pytest.mark.parametrize("limit", [0, 2048], ids=["chroma", "exact"])
def test_many_queries_in_one_call_answer_as_one_query_each(graph, embedder, monkeypatch, limit):
    monkeypatch.setattr("graph.universal.EXACT_SEARCH_LIMIT", limit)
    queries = embedder.embed(["city at night", "sharp eyes", "painting", "an anime girl"])
    for kind, base in ((ExpertKind.PEFT, BaseFamily.SD15), (None, None), (ExpertKind.CKPT, None)):
        many = graph.search_many(queries, k=3, kind=kind, base=base)
        one = [graph.search(q, k=3, kind=kind, base=base) for q in queries]
        assert [[(e.id, s) for e, s in hits] for hits in many] == [
            [(e.id, s) for e, s in hits] for hits in one
        ]
    assert graph.search_many(queries[:0], k=3) == []
