"""Streamed merges into single-file checkpoints, the streaming writer and the merge cache."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from graph.records import BaseFamily
from tests.weights.conftest import keymap_shapes, randn, tiny_open_clip
from tools.weights.adapter import Adapter, AdapterModule
from tools.weights.apply import apply_merge
from tools.weights.cache import MergeCache
from tools.weights.checkpoints import Checkpoint
from tools.weights.convert import diffusers_to_ldm
from tools.weights.errors import IncompatibleExpertsError, MergeConfigError, WeightsError
from tools.weights.families import named_parameters
from tools.weights.files import StreamingWriter, TensorSource
from tools.weights.keymap import required_ldm_keys
from tools.weights.plan import MergePlan, WeightedExpert
from tools.weights.stream import merge_to_file
from tools.weights.write import save_adapter


def expert(path, coefficient=1.0):
    return WeightedExpert(path=path, coefficient=coefficient)


@pytest.fixture(scope="module")
def full_plan(tiny_files):
    return MergePlan(
        checkpoints=[
            expert(tiny_files["ckpt_ldm"], 0.3),
            expert(tiny_files["ckpt_diffusers"], 0.1),
        ],
        loras=[expert(tiny_files["lora_kohya"], 1.0), expert(tiny_files["lora_diffusers"], 0.5)],
    )


def test_streamed_merge_equals_the_in_place_merge(pipe, full_plan, tmp_path):
    report = merge_to_file(full_plan, tmp_path / "merged.safetensors")
    assert report.tensors == 1130 and report.family == "sd15"
    parts = {"unet": pipe.unet, "text_encoder": pipe.text_encoder}
    apply_merge(parts, full_plan, backup="none")
    with Checkpoint(tmp_path / "merged.safetensors") as merged:
        for name, param in named_parameters(parts):
            assert torch.equal(merged.diffusers_tensor(name), param), name
    metadata = safe_open(str(tmp_path / "merged.safetensors"), "pt").metadata()
    assert metadata["diffgraph_recipe_hash"] == full_plan.recipe_hash()
    assert "tiny random weights" in metadata["diffgraph_demo"]  # demo inputs stay marked


def test_output_has_the_real_ldm_layout_and_loads_in_diffusers(pipe, full_plan, tmp_path):
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    merge_to_file(full_plan, tmp_path / "merged.safetensors")
    state = load_file(str(tmp_path / "merged.safetensors"))
    real = keymap_shapes("sd1-ldm", ("diffuser", "clip_l", "vae"))
    assert set(state) <= set(real)
    assert {k for k in real if k.startswith("model.diffusion_model.")} <= set(state)
    unet = convert_ldm_unet_checkpoint(state, dict(pipe.unet.config))
    apply_merge({"unet": pipe.unet, "text_encoder": pipe.text_encoder}, full_plan, backup="none")
    pipe.unet.load_state_dict(unet)  # strict: every key converted by diffusers fits
    merged_unet = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    assert all(torch.equal(unet[k], merged_unet[k]) for k in unet)


def test_lora_only_merge_needs_a_base(tiny_files, tmp_path):
    plan = MergePlan(loras=[expert(tiny_files["lora_kohya"], 0.7)], normalize="raw")
    with pytest.raises(MergeConfigError, match="needs a base checkpoint"):
        merge_to_file(plan, tmp_path / "x.safetensors")
    based = plan.model_copy(update={"base": tiny_files["ckpt_ldm"]})
    merge_to_file(based, tmp_path / "x.safetensors", dtype="float16")
    out = load_file(str(tmp_path / "x.safetensors"))
    base = load_file(str(tiny_files["ckpt_ldm"]))
    key = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
    assert out[key].dtype == torch.float16
    assert not torch.equal(out[key].float(), base[key])
    vae_key = "first_stage_model.encoder.conv_in.weight"
    assert torch.equal(out[vae_key], base[vae_key].half())


def test_ties_on_checkpoints_uses_the_base(tiny_files, tmp_path):
    plan = MergePlan(
        checkpoints=[expert(tiny_files["ckpt_ldm"]), expert(tiny_files["ckpt_diffusers"])],
        method="ties",
        params={"density": 0.5},
    )
    with pytest.raises(MergeConfigError, match="'ties'"):
        merge_to_file(plan, tmp_path / "t.safetensors")
    based = plan.model_copy(update={"base": tiny_files["ckpt_ldm"]})
    merge_to_file(based, tmp_path / "t.safetensors")
    assert (tmp_path / "t.safetensors").is_file()


def test_incompatible_checkpoints_write_nothing(tiny_files, tmp_path):
    other = tmp_path / "other.safetensors"
    state = load_file(str(tiny_files["ckpt_ldm"]))
    state.pop("model.diffusion_model.out.2.weight")
    save_file(state, str(other))
    plan = MergePlan(checkpoints=[expert(tiny_files["ckpt_ldm"]), expert(other)])
    with pytest.raises(IncompatibleExpertsError, match=r"out\.2\.weight"):
        merge_to_file(plan, tmp_path / "m.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.safetensors"]


def test_sdxl_text_encoder_2_lora_lands_in_the_fused_in_proj(tmp_path):
    te2 = tiny_open_clip()
    ldm = diffusers_to_ldm({"text_encoder_2": te2.state_dict()}, BaseFamily.SDXL)
    filler = {k: torch.zeros(1) for k in required_ldm_keys(BaseFamily.SDXL) if k not in ldm}
    save_file({**filler, **ldm}, str(tmp_path / "xl.safetensors"))  # a complete key set
    q = "text_encoder_2.text_model.encoder.layers.1.self_attn.q_proj"
    up, down = randn(8, 2), randn(2, 8, seed=1)
    lora = Adapter(
        "kohya-lora", BaseFamily.SDXL, {q: AdapterModule("lora", {"up": up, "down": down})}
    )
    save_adapter(lora, tmp_path / "l.safetensors")
    plan = MergePlan(
        loras=[expert(tmp_path / "l.safetensors", 0.5)],
        normalize="raw",
        base=tmp_path / "xl.safetensors",
    )
    merge_to_file(plan, tmp_path / "out.safetensors")
    out = load_file(str(tmp_path / "out.safetensors"))
    key = "conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_weight"
    expected = ldm[key].clone()
    expected[:8] += 0.5 * (up @ down)
    assert torch.equal(out[key], expected)
    assert torch.equal(
        out["conditioner.embedders.1.model.text_projection"], te2.text_projection.weight.T
    )


def test_streaming_writer_layout_order_and_atomicity(tmp_path):
    tensors = {"b": randn(3, 2), "a": torch.arange(5, dtype=torch.int64), "c": randn(4).half()}
    layout = {k: (v.dtype, tuple(v.shape)) for k, v in tensors.items()}
    with StreamingWriter(tmp_path / "s.safetensors", layout, {"note": "x"}) as writer:
        for key, value in tensors.items():
            writer.write(key, value)
    loaded = load_file(str(tmp_path / "s.safetensors"))
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
    assert safe_open(str(tmp_path / "s.safetensors"), "pt").metadata() == {"note": "x"}
    target = tmp_path / "t.safetensors"
    with pytest.raises(WeightsError, match="out of order"), StreamingWriter(target, layout) as w:
        w.write("a", tensors["a"])
    with pytest.raises(WeightsError, match="never written"), StreamingWriter(target, layout) as w:
        w.write("b", tensors["b"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.safetensors"]


def test_tensor_source_reopens_its_map(tiny_files):
    source = TensorSource(tiny_files["ckpt_ldm"], remap_bytes=200_000)
    reference = load_file(str(tiny_files["ckpt_ldm"]))
    for key in source.shapes:
        assert torch.equal(source.get(key), reference[key])
    source.close()


def test_merge_cache_reuses_a_recipe(full_plan, tmp_path):
    cache = MergeCache(tmp_path / "cache")
    assert cache.get(full_plan) is None
    path, report = cache.merge(full_plan)
    assert report is not None and path.name == f"{full_plan.recipe_hash()}.safetensors"
    again, second = cache.merge(full_plan)
    assert again == path and second is None
    assert cache.get(full_plan) == path
    assert cache.path(full_plan, "float16") != path
