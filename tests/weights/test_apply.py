"""In-place merges into a loaded tiny SD 1.5 pipeline, and their exact undo."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from tests.weights.conftest import randn, state_of
from tools.weights.adapter import Adapter, AdapterModule
from tools.weights.apply import apply_merge
from tools.weights.checkpoints import Checkpoint
from tools.weights.errors import IncompatibleExpertsError, MergeConfigError, UnmatchedKeysError
from tools.weights.families import get_submodule
from tools.weights.methods import weighted_sum
from tools.weights.plan import MergePlan, WeightedExpert
from tools.weights.read import read_adapter
from tools.weights.write import save_adapter

Q = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"


def components(pipe):
    return {"unet": pipe.unet, "text_encoder": pipe.text_encoder}


def expert(path, coefficient=1.0):
    return WeightedExpert(path=path, coefficient=coefficient)


@pytest.mark.parametrize("backup", ["memory", "disk"])
def test_apply_then_restore_is_bit_exact(pipe, tiny_files, backup, tmp_path):
    parts = components(pipe)
    before = state_of(parts)
    plan = MergePlan(
        checkpoints=[
            expert(tiny_files["ckpt_ldm"], 0.3),
            expert(tiny_files["ckpt_diffusers"], 0.1),
        ],
        loras=[expert(tiny_files["lora_kohya"], 1.0), expert(tiny_files["lora_diffusers"], 0.5)],
    )
    merged = apply_merge(parts, plan, backup=backup, backup_dir=tmp_path)
    after = state_of(parts)
    assert sum(not torch.equal(before[k], after[k]) for k in before) > 500
    merged.restore()
    restored = state_of(parts)
    assert all(torch.equal(before[k], restored[k]) for k in before)
    merged.restore()  # a second call does nothing
    assert list(tmp_path.iterdir()) == []  # the disk backup is removed


def test_context_manager_restores(pipe, tiny_files):
    parts = components(pipe)
    before = state_of(parts)
    plan = MergePlan(loras=[expert(tiny_files["lora_kohya"], 0.8)], normalize="raw")
    with apply_merge(parts, plan) as merged:
        assert merged.lora_modules == {"a.safetensors": 176}
        assert len(merged.changed) == 176
    assert all(torch.equal(before[k], v) for k, v in state_of(parts).items())


def test_lora_merge_is_the_weighted_sum_of_deltas(pipe, tiny_files):
    parts = components(pipe)
    plan = MergePlan(
        loras=[expert(tiny_files["lora_kohya"], 0.2), expert(tiny_files["lora_diffusers"], 0.9)]
    )
    names = (Q, "text_encoder.text_model.encoder.layers.11.self_attn.out_proj")
    before = {n: get_submodule(parts, n).weight.detach().clone() for n in names}
    apply_merge(parts, plan, backup="none")
    weights = plan.lora_weights()
    a, b = (read_adapter(e.path) for e in plan.loras)
    for name in names:
        base = before[name]
        deltas = [a.modules[name].delta(base=base), b.modules[name].delta(base=base)]
        expected = base + weighted_sum(deltas, weights)  # stacked factors: rounded once
        torch.testing.assert_close(get_submodule(parts, name).weight, expected, rtol=0, atol=1e-6)


def test_checkpoint_merge_matches_diffusers_own_conversion(pipe, tiny_files):
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
    )
    from safetensors.torch import load_file

    ldm = load_file(str(tiny_files["ckpt_ldm"]))
    first = {
        "unet": convert_ldm_unet_checkpoint(ldm, dict(pipe.unet.config)),
        "text_encoder": convert_ldm_clip_checkpoint(ldm),
    }
    second = {
        "unet": load_file(
            str(tiny_files["ckpt_diffusers"] / "unet/diffusion_pytorch_model.safetensors")
        ),
        "text_encoder": load_file(
            str(tiny_files["ckpt_diffusers"] / "text_encoder/model.safetensors")
        ),
    }
    plan = MergePlan(
        checkpoints=[
            expert(tiny_files["ckpt_ldm"], 0.4),
            expert(tiny_files["ckpt_diffusers"], -0.2),
        ]
    )
    apply_merge(components(pipe), plan, backup="none")
    w = plan.checkpoint_weights()
    for component in ("unet", "text_encoder"):
        for name, value in getattr(pipe, component).state_dict().items():
            pair = [_lookup(first[component], name), _lookup(second[component], name)]
            assert torch.equal(value, weighted_sum(pair, w)), name


def _lookup(state, name):
    """``name`` in a state dict that may keep CLIP's ``text_model.`` level."""
    return state[name] if name in state else state[f"text_model.{name}"]


def test_task_vector_methods_use_the_loaded_weights_as_base(pipe, tiny_files):
    parts = components(pipe)
    before = state_of(parts)
    plan = MergePlan(
        checkpoints=[expert(tiny_files["ckpt_ldm"], 1.0)],
        method="task_arithmetic",
        normalize="raw",
        params={"scale": 0.5},
    )
    apply_merge(parts, plan, backup="none")
    with Checkpoint(tiny_files["ckpt_ldm"]) as ckpt:
        name = "unet.conv_in.weight"
        expert_weight = ckpt.diffusers_tensor(name)
    base = before[name]
    assert torch.equal(pipe.unet.conv_in.weight, base + (expert_weight - base) * 0.5)


def test_unmatched_lora_changes_nothing(pipe, tmp_path):
    state = {
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": randn(4, 16, 1, 1),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": randn(16, 4, 1, 1),
        "lora_unet_down_blocks_7_attentions_0_proj_in.lora_down.weight": randn(4, 16, 1, 1),
        "lora_unet_down_blocks_7_attentions_0_proj_in.lora_up.weight": randn(16, 4, 1, 1),
    }
    save_file(state, str(tmp_path / "bad.safetensors"))
    parts = components(pipe)
    before = state_of(parts)
    with pytest.raises(UnmatchedKeysError) as info:
        apply_merge(parts, MergePlan(loras=[expert(tmp_path / "bad.safetensors")]))
    assert info.value.keys == sorted(k for k in state if "blocks_7" in k)
    assert all(torch.equal(before[k], v) for k, v in state_of(parts).items())


def test_lora_of_another_width_changes_nothing(pipe, tmp_path):
    module = AdapterModule("lora", {"up": randn(320, 2), "down": randn(2, 320)})
    path = save_adapter(Adapter("kohya-lora", None, {Q: module}), tmp_path / "wide.safetensors")
    parts = components(pipe)
    before = state_of(parts)
    with pytest.raises(Exception, match="do not fit"):
        apply_merge(parts, MergePlan(loras=[expert(path)]))
    assert all(torch.equal(before[k], v) for k, v in state_of(parts).items())


def test_checkpoint_of_another_architecture_changes_nothing(pipe, tiny_files):
    from diffusers import UNet2DConditionModel

    parts = {
        "unet": UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            norm_num_groups=8,
        )
    }
    before = state_of(parts)
    with pytest.raises(IncompatibleExpertsError, match="nothing was written or applied"):
        apply_merge(parts, MergePlan(checkpoints=[expert(tiny_files["ckpt_diffusers"])]))
    assert all(torch.equal(before[k], v) for k, v in state_of(parts).items())


def test_dora_module_applied_in_place(pipe, tmp_path):
    weight = pipe.unet.get_submodule(Q.split(".", 1)[1]).weight.detach().clone()
    magnitude = weight.norm(dim=1, keepdim=True) * 1.5
    module = AdapterModule(
        "lora", {"up": randn(16, 2), "down": randn(2, 16, seed=1)}, alpha=1.0, dora_scale=magnitude
    )
    path = save_adapter(Adapter("dora", None, {Q: module}), tmp_path / "dora.safetensors")
    apply_merge(
        components(pipe), MergePlan(loras=[expert(path, 0.5)], normalize="raw"), backup="none"
    )
    combined = weight + 0.5 * (module.factors["up"] @ module.factors["down"])
    dora = magnitude * combined / combined.norm(dim=1, keepdim=True)
    expected = weight + 0.5 * (dora - weight)
    torch.testing.assert_close(pipe.unet.get_submodule(Q.split(".", 1)[1]).weight, expected)


def test_without_backup_restore_is_refused(pipe, tiny_files):
    merged = apply_merge(
        components(pipe), MergePlan(loras=[expert(tiny_files["lora_kohya"])]), backup="none"
    )
    with pytest.raises(MergeConfigError, match="cannot be undone"):
        merged.restore()
