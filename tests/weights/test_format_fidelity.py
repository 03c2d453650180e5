"""Formats other tools write (cloneofsimo ``lora``), the shipped module tables, and what
merged files keep for the tools that read them."""

from __future__ import annotations

import pytest

from graph.records import BaseFamily
from tools.weights import families


@pytest.mark.parametrize("family", list(BaseFamily))
def test_shipped_shape_tables_equal_the_built_models(family):
    shipped = families.parameter_shapes(family)
    built = families.build_parameter_shapes(family)
    assert list(shipped.items()) == list(built.items())


def test_inspect_builds_no_model(tiny_files, monkeypatch):
    from tools.weights.inspect import inspect_expert

    def refuse(*args, **kwargs):
        raise AssertionError("inspect must read the shipped tables, not build models")

    monkeypatch.setattr(families, "build_component", refuse)
    info = inspect_expert(tiny_files["lora_kohya"])
    assert info.format == "kohya-lora" and info.fits_full_size is False


def test_merged_file_keeps_what_tools_read(tiny_files, tmp_path):
    """Scheduler buffers and the inputs' ``ss_*`` / ``modelspec.*`` survive a merge; the
    merged file carries its own SAI model spec (title, architecture, merged_from, recipe)."""
    import json

    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    from tools.weights.files import read_metadata, save_tensors
    from tools.weights.plan import MergePlan, WeightedExpert
    from tools.weights.stream import merge_to_file

    state = load_file(str(tiny_files["ckpt_ldm"]))
    schedule = torch.linspace(0.9991, 0.0047, 1000, dtype=torch.float32)
    state.update(
        {
            "alphas_cumprod": schedule,
            "model_ema.decay": torch.tensor(0.9999),
            "model_ema.diffusion_modelinput_blocks00weight": torch.zeros(2),
        }
    )
    source = tmp_path / "input-a.safetensors"
    save_tensors(
        state,
        source,
        {
            "modelspec.title": "Input A",
            "modelspec.prediction_type": "epsilon",
            "modelspec.hash_sha256": "0x1234",
            "ss_base_model_version": "sd_v1",
        },
    )
    plan = MergePlan(
        checkpoints=[WeightedExpert(path=source, coefficient=1.0)],
        loras=[WeightedExpert(path=tiny_files["lora_kohya"], coefficient=0.7, name="style")],
        normalize="strength",
    )
    out = tmp_path / "my-merge.safetensors"
    report = merge_to_file(plan, out)
    merged = load_file(str(out))
    assert torch.equal(merged["alphas_cumprod"], schedule)
    assert not any(k.startswith("model_ema.") for k in merged)
    assert report.tensors == len(merged)
    meta = safe_open(str(out), "pt").metadata()
    assert meta["modelspec.sai_model_spec"] == "1.0.0"
    assert meta["modelspec.title"] == "my-merge"
    assert meta["modelspec.architecture"] == "stable-diffusion-v1"
    assert meta["modelspec.resolution"] == "512x512"
    assert meta["modelspec.prediction_type"] == "epsilon"  # kept (ComfyUI reads it)
    assert meta["ss_base_model_version"] == "sd_v1"
    assert "modelspec.hash_sha256" not in meta  # described the input, not the merge
    assert meta["modelspec.merged_from"] == "Input A, style"
    recipe = json.loads(meta["sd_merge_recipe"])
    assert recipe["method"] == plan.method and recipe["type"] == "diffgraph"
    inputs = json.loads(meta["diffgraph_inputs"])
    assert [i["kind"] for i in inputs] == ["checkpoint", "lora"]
    lora_meta = read_metadata(tiny_files["lora_kohya"])
    assert inputs[1]["metadata"] == {k: v for k, v in lora_meta.items() if k.startswith("ss_")}
    assert meta["diffgraph_recipe_hash"] == plan.recipe_hash()
