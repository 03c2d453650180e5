"""`generate` end to end on the tiny backends: selection → planner → merge → images."""

from __future__ import annotations

import json

import pytest
import torch

from agents.pipeline.errors import PipelineError
from agents.pipeline.pipeline import GenerateOptions, run
from graph.records import BaseFamily, Expert, ExpertKind
from graph.universal import UniversalGraph
from tools.settings import Settings

EXPERTS = [
    ("ckpt-photo", "ckpt", "photorealistic portraits and scenes, natural light", []),
    ("lora-red-hair", "peft", "vivid red hair with detailed strands", ["redhair"]),
    ("lora-watercolor", "peft", "watercolor painting style with soft washes", ["wcstyle"]),
    ("lora-castle", "peft", "medieval castles on hills", []),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_sd15, tiny_sd15_files, embedder):
    from tests.support.tiny_experts import tiny_experts, tiny_pipeline

    root = tmp_path_factory.mktemp("pipeline")
    settings = Settings(data_dir=root / "data", base_model=tiny_sd15_files.single_file)
    settings.generation.steps = 2
    experts = tiny_experts(tiny_sd15, root, EXPERTS)
    graph = UniversalGraph(settings.graph, embedder=embedder)
    graph.add_experts(experts)
    yield tiny_pipeline(settings, graph, tiny_sd15_files.folder)
    graph.close()


def options(**kw) -> GenerateOptions:
    return GenerateOptions(width=64, height=64, **kw)


def test_selected_experts_are_merged_with_softmax_weights(world, tmp_path):
    out = run("a portrait of a woman with red hair, watercolor", world, options(seed=3), tmp_path)
    recipe = out.recipe
    assert [e.expert_id for e in recipe.loras] == ["lora-red-hair", "lora-watercolor"]
    assert [e.merge_weight for e in recipe.loras] == pytest.approx([0.5, 0.5])
    assert recipe.checkpoints == []  # a watercolour asks for no photoreal checkpoint
    assert recipe.final_prompt.startswith("redhair, wcstyle, ")
    assert recipe.demo and recipe.selection_mode == "no-llm"
    assert recipe.noise_device == "cpu"  # a seed gives the same image on any hardware
    assert any("tiny random weights" in n for n in recipe.notes)

    assert out.image_paths[0].is_file()
    saved = json.loads(out.recipe_path.read_text())
    assert saved["images"] == [out.image_paths[0].name]
    assert (tmp_path / out.recipe_path.name.replace(".recipe.json", ".a1111.txt")).is_file()
    events = [json.loads(line)["event"] for line in out.trace_path.read_text().splitlines()]
    assert events[0] == "run_start" and events[-1] == "run_end"

    # the images are exactly those of the generator with the same merge
    from PIL import Image

    from agents.pipeline.pipeline import merge_plan
    from tools.generation.request import GenerationRequest

    request = GenerationRequest(
        prompts=[out.selection.text], steps=2, seed=3, width=64, height=64, guidance=recipe.guidance
    )
    again = world.generator.generate(
        request, merge_plan(recipe), trigger_words=["redhair", "wcstyle"]
    )
    expected = (again.images[0].permute(1, 2, 0) * 255).round().to(torch.uint8)
    saved_image = torch.from_numpy(__import__("numpy").array(Image.open(out.image_paths[0])))
    assert torch.equal(saved_image, expected)


def test_fixed_experts_pins_and_bans(world, tmp_path):
    fixed = run("anything", world, options(experts=["lora-castle"]), tmp_path)
    assert [e.expert_id for e in fixed.recipe.loras] == ["lora-castle"]
    assert fixed.recipe.selection_mode == "fixed" and not fixed.recipe.checkpoints

    out = run(
        "a portrait of a woman with red hair, watercolor",
        world,
        options(banned=["lora-watercolor"], pinned=["lora-castle"]),
        tmp_path,
    )
    assert [e.expert_id for e in out.recipe.loras] == ["lora-red-hair", "lora-castle"]


def test_base_weights_are_restored_between_prompts(world, tmp_path):
    before = {k: v.clone() for k, v in world.generator.pipe.unet.state_dict().items()}
    run("red hair", world, options(), tmp_path)
    after = world.generator.pipe.unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_wrong_family_and_deprecated_experts_are_refused(world, tmp_path):
    world.graph.add_expert(
        Expert(
            id="xl-lora", kind=ExpertKind.PEFT, base=BaseFamily.SDXL, name="xl", description="xl"
        )
    )
    with pytest.raises(PipelineError, match="is for sdxl but the loaded base model is sd15"):
        run("x", world, options(experts=["xl-lora"]), tmp_path)


def test_generate_cli(world, tmp_path, monkeypatch, tiny_sd15_files):
    from typer.testing import CliRunner

    from main import app

    monkeypatch.setenv("DIFFGRAPH_DATA_DIR", str(world.settings.data_dir))
    monkeypatch.setenv("DIFFGRAPH_BASE_MODEL", str(tiny_sd15_files.folder))
    monkeypatch.setenv("DIFFGRAPH_GENERATION__STEPS", "2")
    result = CliRunner().invoke(
        app,
        [
            "generate",
            "red hair, watercolor",
            "--out",
            str(tmp_path),
            "--size",
            "64x64",
            "--seed",
            "5",
            "--save-merged",
            str(tmp_path / "merged.safetensors"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["recipe"]["seed"] == 5 and len(data["images"]) == 1
    assert "no trained planner" in " ".join(data["recipe"]["notes"])
    from safetensors import safe_open

    with safe_open(data["merged_model"], "pt") as merged:
        assert any(k.startswith("model.diffusion_model.") for k in merged.keys())  # noqa: SIM118
    bad = CliRunner().invoke(app, ["generate", "x", "--size", "big"])
    assert bad.exit_code == 2 and "WIDTHxHEIGHT" in bad.stderr


def test_gated_fusion_leaves_the_pipeline_as_it_was(world, tmp_path):
    before = {k: v.clone() for k, v in world.generator.pipe.unet.state_dict().items()}
    out = run(
        "a portrait of a woman with red hair, watercolor", world, options(fusion="gated"), tmp_path
    )
    assert out.recipe.fusion == "gated" and len(out.recipe.loras) == 2
    assert any("untrained AutoLoRA gates" in n for n in out.recipe.notes)
    assert out.image_paths[0].is_file()
    after = world.generator.pipe.unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    hooks = [m for m in world.generator.pipe.unet.modules() if m._forward_hooks]
    assert not hooks
