"""Weight-embedding retrieval over a graph, the selection agent's second retriever, planner
features, and the benchmark rows (synthetic LoRAs, demo data)."""

from __future__ import annotations

import pytest
import torch

from graph.records import BaseFamily, Expert, ExpertKind, WeightFile
from tools.autolora.config import TrainingRecord
from tools.autolora.retrieval import AutoLoraRetriever, EmbeddingCache

SD15 = BaseFamily.SD15
VAGUE = "LoRA v2, trained by me"  # a homepage that says little


@pytest.fixture(scope="module")
def lora_graph(tmp_path_factory, synthetic, embedder):
    """The held-out synthetic LoRAs as graph experts with weight files; the first LoRA of
    each concept has a vague description. Plus a checkpoint and a LoRA without weights."""
    from graph.config import GraphConfig
    from graph.universal import UniversalGraph
    from tools.weights.write import save_adapter

    root = tmp_path_factory.mktemp("autolora-graph")
    _, held_out = synthetic
    experts, seen = [], set()
    for lora in held_out:
        path = save_adapter(lora.adapter, root / f"{lora.id}.safetensors", "kohya")
        vague = lora.concept not in seen
        seen.add(lora.concept)
        experts.append(
            Expert(
                id=lora.id,
                kind=ExpertKind.PEFT,
                base=SD15,
                name=f"{lora.concept} {lora.id[-1]}",
                description=VAGUE if vague else lora.captions[0],
                example_prompts=[] if vague else list(lora.captions[1:]),
                file=WeightFile(path=str(path)),
                demo=True,
            )
        )
    experts.append(Expert(id="ckpt-base", kind=ExpertKind.CKPT, base=SD15, name="Base"))
    experts.append(
        Expert(id="lora-missing", kind=ExpertKind.PEFT, base=SD15, name="Gone", description="x")
    )
    graph = UniversalGraph(GraphConfig(data_dir=root / "data"), embedder)
    graph.add_experts(experts)
    yield graph
    graph.close()


def _retriever(graph, trained, cache_path, digest="enc-1"):
    record = TrainingRecord(demo=True)
    return AutoLoraRetriever(
        graph, trained.encoder, record, cache=EmbeddingCache(cache_path, digest)
    )


def _concept(expert_id: str) -> str:
    return expert_id.split("-", 1)[1].rsplit("-", 2)[0]


def test_search_by_weights(lora_graph, trained, embedder, tmp_path):
    retriever = _retriever(lora_graph, trained, tmp_path / "cache.npz")
    for caption in ("a knight in shining steel armor", "neon signs on a rainy night street"):
        hits = retriever.search(embedder.embed_one(caption), 3, SD15)
        concepts = {_concept(e.id) for e, _ in hits}
        assert concepts == ({"armor"} if "knight" in caption else {"cyberpunk"})
        sims = [s for _, s in hits]
        assert sims == sorted(sims, reverse=True)
    assert "no local weights file" in retriever.skipped["lora-missing"]
    assert retriever.embeddings(SD15).vectors.shape == (18, 384)
    assert retriever.embeddings(BaseFamily.SDXL).ids == []
    assert retriever.note and "DEMO" in retriever.note


def test_embeddings_are_cached_by_file_and_encoder(lora_graph, trained, tmp_path, monkeypatch):
    cache = tmp_path / "cache.npz"
    first = _retriever(lora_graph, trained, cache).embeddings(SD15)
    assert cache.is_file()

    def unreadable(*args, **kwargs):
        raise AssertionError("the weights file was read again")

    monkeypatch.setattr("tools.autolora.retrieval.read_expert", unreadable)
    again = _retriever(lora_graph, trained, cache).embeddings(SD15)
    assert again.ids == first.ids and (again.vectors == first.vectors).all()
    with pytest.raises(AssertionError, match="read again"):  # another encoder: not reused
        _retriever(lora_graph, trained, cache, digest="enc-2").embeddings(SD15)


def test_planner_features(lora_graph, trained, tmp_path):
    from tools.autolora.features import expert_features, featurizer

    retriever = _retriever(lora_graph, trained, tmp_path / "cache.npz")
    lora_id = lora_graph.experts(kind=ExpertKind.PEFT)[0].id
    ids = ["ckpt-base", lora_id, "lora-missing"]
    features = expert_features(ids, retriever)
    assert features.shape == (3, 384) and features.dtype == torch.float32
    assert not features[0].any() and not features[2].any()
    assert torch.allclose(features[1].norm(), torch.tensor(1.0), atol=1e-5)
    subgraph = lora_graph.subgraph(ids)
    assert torch.equal(featurizer(retriever)(subgraph), features)


def test_selection_with_the_autolora_retriever(lora_graph, trained, tmp_path):
    """A LoRA whose homepage says little is found by its weights, not by its description."""
    from agents.selection import SelectionContext, select
    from tools.settings import SelectionSettings
    from tools.tracing import TraceWriter, read_trace

    vague_armor = next(
        e.id
        for e in lora_graph.experts(kind=ExpertKind.PEFT)
        if e.description == VAGUE and _concept(e.id) == "armor"
    )
    prompt = "a knight in engraved steel armor"

    def run(retriever_mode: str):
        settings = SelectionSettings(retriever=retriever_mode, min_similarity=0.2, max_loras=3)
        ctx = SelectionContext(
            graph=lora_graph,
            settings=settings,
            tracer=TraceWriter(tmp_path / "traces", "selection"),
            lora_retriever=_retriever(lora_graph, trained, tmp_path / "cache.npz"),
        )
        return select(prompt, ctx)

    by_text = run("description")
    assert vague_armor not in by_text.expert_ids
    by_weights = run("autolora")
    # weighed by its weights, it passes the need bar: selected, or one of the three armor
    # LoRAs the phrase asks for (a phrase keeps its single best expert)
    passed = by_weights.expert_ids + [
        d.id for d in by_weights.dropped if "a better expert was chosen" in d.reason
    ]
    assert vague_armor in passed
    assert {_concept(i) for i in by_weights.expert_ids} == {"armor"}
    assert any("DEMO" in w for w in by_weights.warnings)
    tools = {e.data["tool"] for e in read_trace(by_weights.trace_path) if e.event == "tool_call"}
    assert "search_experts_autolora" in tools
    both = run("both")  # the union: the vague LoRA is a candidate, filtered with the rest
    assert vague_armor in both.expert_ids + [d.id for d in both.dropped]
    assert {_concept(i) for i in both.expert_ids} == {"armor"}


def test_selection_without_a_retriever_says_how_to_get_one(lora_graph):
    from agents.selection import SelectionContext, select
    from agents.selection.errors import SelectionError
    from tools.settings import SelectionSettings

    ctx = SelectionContext(graph=lora_graph, settings=SelectionSettings(retriever="autolora"))
    with pytest.raises(SelectionError, match=r"no LoRA retriever.*make_context"):
        select("a cat", ctx)


def test_top_k_retrieved_loras_gated(lora_graph, trained, pipe, embedder, tmp_path):
    """The AutoLoRA benchmark rows: the k LoRAs nearest the prompt, gated-fused."""
    from tools.autolora.generate import generate_gated
    from tools.generation.generator import Generator
    from tools.generation.loading import LoadedPipeline
    from tools.generation.request import GenerationRequest

    generator = Generator(LoadedPipeline(pipe, SD15, demo=True, source="tiny"))
    retriever = _retriever(lora_graph, trained, tmp_path / "cache.npz")
    prompt = "a flock of flamingos"
    request = GenerationRequest(prompts=[prompt], steps=2, width=64, height=64, guidance=5.0)
    hits = retriever.search(embedder.embed_one(prompt), 3, SD15)
    assert {_concept(e.id) for e, _ in hits} == {"flamingo"}
    images = [generate_gated(generator, request, [e for e, _ in hits[:k]], None) for k in (1, 2)]
    assert all(r.images.shape == (1, 3, 64, 64) and r.demo for r in images)
    assert not torch.equal(images[0].images, images[1].images)
    assert not any(m._forward_hooks for m in pipe.unet.modules())


def test_generate_gated_over_merged_checkpoints(lora_graph, pipe, tmp_path):
    """The ESA row's path: checkpoints merged in place, LoRAs gated; all undone after."""
    from tools.autolora.generate import checkpoint_plan, generate_gated
    from tools.generation.generator import Generator
    from tools.generation.loading import LoadedPipeline
    from tools.generation.request import GenerationRequest
    from tools.tiny import make_tiny_checkpoint

    path = make_tiny_checkpoint(pipe, tmp_path / "ckpt.safetensors", seed=5, strength=0.2)
    ckpt = Expert(
        id="ckpt-file", kind=ExpertKind.CKPT, base=SD15, name="C", file=WeightFile(path=str(path))
    )
    generator = Generator(LoadedPipeline(pipe, SD15, demo=True, source="tiny"))
    request = GenerationRequest(prompts=["a cat"], steps=2, width=64, height=64, guidance=5.0)
    lora = lora_graph.experts(kind=ExpertKind.PEFT)[0]
    state = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    plain = generate_gated(generator, request, [lora], None)
    merged = generate_gated(
        generator, request, [lora], None, checkpoint_plan=checkpoint_plan([ckpt])
    )
    assert not torch.equal(plain.images, merged.images)
    assert all(torch.equal(v, state[k]) for k, v in pipe.unet.state_dict().items())
    assert checkpoint_plan([]) is None
