"""The selection agent in no-LLM mode over a small graph of known experts (real MiniLM)."""

from __future__ import annotations

import pytest

from agents.selection import select
from agents.selection.errors import EmptyPromptError, NoExpertsError
from graph.records import BaseFamily, Expert, ExpertKind
from tools.tracing import read_trace

TRAPS = {"sdxl-red-hair", "lora-red-hair-v1"}  # other family, deprecated


def _everything(result) -> set[str]:
    return set(result.expert_ids) | {d.id for d in result.dropped}


def test_red_haired_woman_watercolor(known_graph, make_context):
    result = select(
        "a portrait of a young woman with red hair, watercolor", make_context(known_graph)
    )
    assert result.mode == "no-llm"
    assert result.step_modes == {"analyse": "no-llm", "filter": "no-llm"}
    assert result.summary == "a portrait of a young woman with red hair, watercolor"
    assert result.attributes == [
        "a portrait of a young woman",
        "young woman",
        "red hair",
        "watercolor",
    ]
    assert [e.id for e in result.checkpoints] == ["ckpt-watercolor"]
    assert "lora-red-hair" in [e.id for e in result.loras]
    assert not result.base_model and result.llm_requests == 0
    # the irrelevant-but-similar candidate was found for "red hair" and filtered out: the
    # phrase serves one need, and the red hair LoRA serves it better
    flamingo = next(d for d in result.dropped if d.id == "lora-red-flamingo")
    assert flamingo.stage == "filter" and "'red hair'" in flamingo.reason
    assert not (_everything(result) & TRAPS)
    assert all(e.reason.startswith("no-LLM policy") for e in result.checkpoints + result.loras)


def test_redundant_duplicate_is_dropped(known_graph, make_context):
    result = select(
        "close-up portrait photo of a woman, detailed eyes, glossy lips",
        make_context(known_graph),
    )
    chosen = [e.id for e in result.loras]
    assert "lora-lips" in chosen
    assert len({"lora-eyes", "lora-eyes-copy"} & set(chosen)) == 1
    (twin,) = [d for d in result.dropped if d.id in {"lora-eyes", "lora-eyes-copy"}]
    # "detailed eyes" serves one need: the twin loses to the better of the two
    assert twin.stage == "filter" and "a better expert was chosen for 'detailed eyes'" in (
        twin.reason
    )
    assert result.checkpoints[0].id == "ckpt-photoreal"


def test_scene_prompt(known_graph, make_context):
    result = select(
        "cyberpunk city street at night, neon, rain, cinematic lighting",
        make_context(known_graph),
    )
    assert {"lora-cyberpunk", "lora-cinematic"} <= {e.id for e in result.loras}
    assert "lora-red-flamingo" not in result.expert_ids


def test_trace_records_every_node_and_tool(known_graph, make_context):
    result = select("a fluffy cat", make_context(known_graph))
    events = read_trace(result.trace_path)
    assert events[0].event == "run_start" and events[-1].event == "run_end"
    assert events[0].data["llm"] == "none (no-LLM policy)"
    nodes = [e.node for e in events if e.event == "node"]
    assert nodes == [
        "parse",
        "analyse",
        "embed_queries",
        "find_checkpoints",
        "find_loras",
        "filter",
        "assemble",
    ]
    tools = {e.data["tool"] for e in events if e.event == "tool_call"}
    assert tools == {
        "count_active_experts",
        "embed",
        "search_experts",
        "find_named_experts",
        "need_evidence",
    }
    assert {e.mode for e in events if e.node in ("analyse", "filter") and e.event == "node"} == {
        "no-llm"
    }
    end = events[-1]
    assert end.mode == "no-llm" and end.outputs["loras"][0]["id"] == "lora-cat"
    assert result.run_id == end.run_id and result.latency_ms > 0


def test_no_fitting_checkpoint_falls_back_to_the_base_model(known_graph, make_context):
    result = select("a fluffy cat", make_context(known_graph))
    assert result.checkpoints == [] and result.base_model
    assert [e.id for e in result.loras] == ["lora-cat"]
    assert any("base model" in w for w in result.warnings)


def test_bounds_from_settings(known_graph, make_context):
    ctx = make_context(known_graph, max_loras=1, max_checkpoints=1, min_similarity=0.1)
    result = select("close-up portrait photo of a woman, detailed eyes, glossy lips", ctx)
    assert len(result.checkpoints) == 1 and len(result.loras) == 1
    bound = [d for d in result.dropped if d.stage == "bound"]
    assert bound and all("selection.max_" in d.reason for d in bound)


def test_lora_tags_name_experts(known_graph, make_context):
    prompt = (
        "a woman, watercolor <lora:gingerHair_v2:0.7> <lora:Ginger Hair XL:1> "
        "<lora:ginger hair v1> <lora:no-such-thing:0.5> <lora:FLUFFYCAT>"
    )
    result = select(prompt, make_context(known_graph))
    tagged = {e.id: e for e in result.loras if e.source == "prompt-tag"}
    assert set(tagged) == {"lora-red-hair", "lora-cat"}  # by file name, by trigger word
    assert tagged["lora-red-hair"].weight == 0.7 and tagged["lora-cat"].weight == 1.0
    notes = {m.name: m for m in result.lora_tags}
    assert notes["gingerHair_v2"].expert_id == "lora-red-hair"
    assert "a sdxl expert, not sd15" in notes["Ginger Hair XL"].note
    assert "deprecated (superseded by lora-red-hair)" in notes["ginger hair v1"].note
    assert notes["no-such-thing"].expert_id is None
    assert sum("the tag is ignored" in w for w in result.warnings) == 3
    # retrieval does not offer the requested experts again
    assert result.expert_ids.count("lora-red-hair") == 1
    assert not (_everything(result) & TRAPS)


def test_in_the_wild_inputs(known_graph, make_context):
    ctx = make_context(known_graph)
    emoji = select("🐱", ctx)
    assert emoji.text == "cat face" and [e.id for e in emoji.loras] == ["lora-cat"]

    long_prompt = ", ".join(["a fluffy cat"] + [f"detail {i}" for i in range(60)])
    long = select(long_prompt, ctx)
    assert any("CLIP tokens" in w for w in long.warnings)
    # every phrase is searched (style words at the end of long prompts too)
    assert len(long.attributes) == 61 and not any("max_attributes" in w for w in long.warnings)

    chinese = select("一个红头发的女孩，水彩画", ctx)
    assert any("English-only" in w for w in chinese.warnings)

    a1111 = select("(masterpiece:1.2), [cat|dog], (fluffy fur:1.3) <hypernet:x:1>", ctx)
    assert "lora-cat" in a1111.expert_ids
    assert any("<hypernet:x:1>" in w for w in a1111.warnings)


@pytest.mark.parametrize("prompt", ["", "   \n ", "<hypernet:foo:1>"])
def test_empty_prompt_is_refused(known_graph, make_context, prompt):
    ctx = make_context(known_graph)
    with pytest.raises(EmptyPromptError, match="the prompt is empty"):
        select(prompt, ctx)
    events = read_trace(ctx.tracer.path)
    assert [e.event for e in events] == ["run_start", "error", "run_end"]
    assert "the prompt is empty" in events[-1].error


def test_graph_without_experts_of_the_family(graph_config, embedder, make_context):
    from graph.universal import UniversalGraph

    with UniversalGraph(graph_config, embedder) as graph:
        with pytest.raises(NoExpertsError, match=r"no active experts of the sd15 family") as err:
            select("a cat", make_context(graph))
        assert "diffgraph crawl --base sd15" in str(err.value)
        graph.add_experts(
            [Expert(id="xl-cat", kind=ExpertKind.PEFT, base=BaseFamily.SDXL, name="cat")]
        )
        with pytest.raises(NoExpertsError, match=r"active experts of sdxl \(1\)"):
            select("a cat", make_context(graph))
        result = select("a cat", make_context(graph, family=BaseFamily.SDXL))
        assert result.family is BaseFamily.SDXL and result.expert_ids == ["xl-cat"]
