"""A warm process (the chat loop, the web UI) keeps one selection context: what it caches
between selections must follow the graph, and repeated phrases are embedded once."""

from __future__ import annotations

import numpy as np
import pytest

from agents.selection import select
from agents.selection.cache import QUERY_EMBEDDINGS, QueryEmbeddings
from agents.selection.needs import LexicalIndex
from graph.config import GraphConfig
from graph.records import BaseFamily, Expert, ExpertKind
from graph.universal import UniversalGraph
from tests.agents.selection.conftest import make_experts
from tools.tracing import read_trace

KITTEN = Expert(
    id="lora-kitten",
    kind=ExpertKind.PEFT,
    base=BaseFamily.SD15,
    name="Kitten Fluff",
    description="Cute kittens LoRA: fluffy kittens with detailed fur.",
    trigger_words=["kittenfluff"],
)


@pytest.fixture
def graph(tmp_path, embedder):
    """The known graph, private to the test (it is written to)."""
    with UniversalGraph(GraphConfig(data_dir=tmp_path / "data"), embedder) as g:
        g.add_experts(make_experts())
        yield g


def _seen(result) -> set[str]:
    return set(result.expert_ids) | {d.id for d in result.dropped}


@pytest.mark.parametrize("limit", [2048, 0], ids=["exact-search", "chroma"])
def test_the_next_select_sees_an_expert_deprecated_or_added(
    graph, make_context, monkeypatch, limit
):
    monkeypatch.setattr("graph.universal.EXACT_SEARCH_LIMIT", limit)
    ctx = make_context(graph)  # one context for every prompt, as a warm process keeps it
    assert "lora-cat" in select("fluffycat asleep on a sofa", ctx).expert_ids  # its trigger word
    graph.deprecate("lora-cat", "withdrawn")
    assert "lora-cat" not in _seen(select("fluffycat asleep on a sofa", ctx))
    assert "lora-kitten" not in _seen(select("kittenfluff asleep on a sofa", ctx))
    assert select("a sofa <lora:Kitten Fluff:0.6>", ctx).lora_tags[0].expert_id is None
    graph.add_expert(KITTEN)
    assert "lora-kitten" in select("kittenfluff asleep on a sofa", ctx).expert_ids
    assert select("a sofa <lora:Kitten Fluff:0.6>", ctx).lora_tags[0].expert_id == "lora-kitten"
    graph.remove("lora-kitten")
    assert "lora-kitten" not in _seen(select("kittenfluff asleep on a sofa", ctx))
    assert "no LoRA named" in select("a sofa <lora:Kitten Fluff:0.6>", ctx).lora_tags[0].note


def test_a_warm_process_embeds_each_phrase_once(known_graph, make_context):
    QUERY_EMBEDDINGS.clear()
    ctx = make_context(known_graph)
    prompt = "a portrait of a young woman with red hair, watercolor"
    first = select(prompt, ctx)
    again = select(prompt, ctx)
    other = select("a cat with red hair, watercolor", ctx)
    embeds = [
        e.outputs
        for e in read_trace(first.trace_path)
        if e.event == "tool_call" and e.data["tool"] == "embed"
    ]
    assert embeds[0]["cached"] == 0
    assert embeds[1]["cached"] == embeds[1]["shape"][0]  # every text seen before
    assert embeds[2]["cached"] >= 2  # "red hair", "watercolor"
    skip = {"latency_ms", "run_id", "trace_path"}
    assert again.model_dump(exclude=skip) == first.model_dump(exclude=skip)
    assert "lora-red-hair" in other.expert_ids


class _Counting:
    """An embedder that records what it is asked to embed."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.asarray([[len(t), 1.0] for t in texts], np.float32)


def test_query_embeddings_embed_only_new_texts_and_stay_bounded():
    cache, embedder = QueryEmbeddings(size=2), _Counting()
    vectors, cached = cache.embed(embedder, ["a", "bb", "a"])
    assert vectors[:, 0].tolist() == [1, 2, 1] and cached == 0
    assert embedder.calls == [["a", "bb"]]  # one batch, each text once
    vectors, cached = cache.embed(embedder, ["bb", "ccc"])
    assert vectors[:, 0].tolist() == [2, 3] and cached == 1 and embedder.calls[-1] == ["ccc"]
    _, cached = cache.embed(embedder, ["a"])  # the least recently used text was dropped
    assert cached == 0 and embedder.calls[-1] == ["a"]
    vectors[0, 0] = 99  # callers get copies
    assert cache.embed(embedder, ["ccc"])[0][0, 0] == 3


def test_named_experts_are_remembered_per_text_and_handed_out_as_copies():
    index = LexicalIndex.build([KITTEN])
    found = index.named_in("kittenfluff, a sofa")
    assert found == {"lora-kitten": "kittenfluff"}
    found.clear()
    assert index.named_in("kittenfluff, a sofa") == {"lora-kitten": "kittenfluff"}
