"""Gated fusion: the gate math, LoRA and global branches, hooks on a pipeline and removal."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tools.autolora.branches import Branch, global_branch, module_branch
from tools.autolora.config import FusionConfig
from tools.autolora.fusion import fusion_layers, gated_fusion, install_fusion, pipeline_components
from tools.autolora.fusion_training import gate_config
from tools.autolora.gates import GateBank, gated_sum
from tools.tiny.experts import tiny_lora_adapter
from tools.weights.adapter import Adapter, AdapterModule
from tools.weights.errors import UnmatchedKeysError
from tools.weights.families import get_submodule

LAYER = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"


def _lora(out_dim, in_dim, rank, seed, alpha=None, kernel=()):
    g = torch.Generator().manual_seed(seed)
    up = torch.randn(out_dim, rank, *([1] * len(kernel)), generator=g)
    down = torch.randn(rank, in_dim, *kernel, generator=g)
    return AdapterModule(kind="lora", factors={"up": up, "down": down}, alpha=alpha)


def _forced_open(gates: GateBank) -> None:
    """Every gate 1 (bias +inf, weights 0) and every fusion scale 1."""
    with torch.no_grad():
        for gate in gates.gates:
            gate.bias.fill_(math.inf)
            gate.scale.fill_(1.0)


def _images(pipe):
    out = pipe(
        "a red cat",
        num_inference_steps=2,
        width=64,
        height=64,
        output_type="pt",
        generator=torch.Generator().manual_seed(0),
    )
    return out.images


def test_gates_are_per_dimension():
    base = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(0))
    h = torch.ones(2, 5, 4)
    zeros = torch.zeros(4)
    bias = torch.tensor([math.inf, -math.inf, math.inf, -math.inf])
    out = gated_sum(base, [h], zeros, zeros, zeros, bias, torch.tensor(3.0))
    assert torch.equal(out[..., 0::2], base[..., 0::2] + 3.0)  # gate 1: the branch, scaled
    assert torch.equal(out[..., 1::2], base[..., 1::2])  # gate 0: the base output only
    # the formula, with every term active
    g = torch.Generator().manual_seed(1)
    wb, wl, wc, b = (torch.randn(4, generator=g) for _ in range(4))
    h2 = torch.randn(2, 5, 4, generator=g)
    out = gated_sum(base, [h, h2], wb, wl, wc, b, torch.tensor(0.7))
    nb = nn.functional.layer_norm(base, (4,))
    gates = [
        torch.sigmoid(wb * nb + wl * n + wc * nb * n + b)
        for n in (torch.zeros(2, 5, 4), nn.functional.layer_norm(h2, (4,)))
    ]
    assert torch.allclose(out, base + 0.7 * (gates[0] * h + gates[1] * h2), atol=1e-6)
    # a conv output: the gates run over the channel dimension
    conv_out = gated_sum(
        base.permute(0, 2, 1), [h2.permute(0, 2, 1)], wb, wl, wc, b, torch.tensor(0.7), dim=1
    )
    single = gated_sum(base, [h2], wb, wl, wc, b, torch.tensor(0.7))
    assert torch.allclose(conv_out, single.permute(0, 2, 1), atol=1e-6)


def test_open_gates_give_exactly_the_sum_of_lora_outputs(pipe):
    """Gates forced to 1 and scale 1: the fused output is the base output plus each LoRA's
    own output, bit for bit, and matches merging the deltas into the weight."""
    adapters = [tiny_lora_adapter(pipe, 1), tiny_lora_adapter(pipe, 2, rank=2)]
    gates = GateBank(gate_config(pipe, adapters, global_rank=0))
    _forced_open(gates)
    module = get_submodule(pipeline_components(pipe), LAYER)
    x = torch.randn(2, 7, module.in_features, generator=torch.Generator().manual_seed(3))
    plain = module(x)
    lora_outputs = []
    for adapter in adapters:
        m = adapter.modules[LAYER]
        up = m.factors["up"].float() * m.scale
        lora_outputs.append(nn.functional.linear(nn.functional.linear(x, m.factors["down"]), up))
    with gated_fusion(pipe, adapters, gates):
        fused = module(x)
    assert torch.equal(fused, plain + (lora_outputs[0] + lora_outputs[1]))
    merged = module.weight + sum(a.modules[LAYER].delta() for a in adapters)
    assert torch.allclose(fused, nn.functional.linear(x, merged, module.bias), atol=1e-5)
    assert torch.equal(module(x), plain)  # hooks gone


def test_untrained_gates_are_the_plain_sum(pipe):
    adapters = [tiny_lora_adapter(pipe, 1), tiny_lora_adapter(pipe, 2)]
    module = get_submodule(pipeline_components(pipe), LAYER)
    x = torch.randn(3, module.in_features, generator=torch.Generator().manual_seed(4))
    layers = fusion_layers(pipeline_components(pipe), adapters, global_rank=0)
    branches = layers[LAYER].branches
    with install_fusion(layers, GateBank(gate_config(pipe, adapters, 0))):
        fused = module(x)
    with torch.no_grad():
        outputs = [b(module, x) for b in branches]
        assert torch.equal(fused, module(x) + (outputs[0] + outputs[1]))


def test_weights_scale_each_lora(pipe):
    adapters = [tiny_lora_adapter(pipe, 1), tiny_lora_adapter(pipe, 2)]
    components = pipeline_components(pipe)
    one = fusion_layers(components, adapters, [1.0, 0.0], global_rank=0)[LAYER].branches
    alone = fusion_layers(components, adapters[:1], global_rank=0)[LAYER].branches
    assert torch.equal(one[0].delta(), alone[0].delta())
    assert not one[1].delta().any()


def test_conv_branches_match_the_merged_weight():
    conv = nn.Conv2d(6, 8, 3, stride=2, padding=1)
    lora = _lora(8, 6, 2, seed=0, alpha=1.0, kernel=(3, 3))
    loha = AdapterModule(
        kind="loha",
        factors={
            "w1_a": torch.randn(8, 2),
            "w1_b": torch.randn(2, 54),
            "w2_a": torch.randn(8, 2),
            "w2_b": torch.randn(2, 54),
        },
    )
    x = torch.randn(2, 6, 9, 9)
    with torch.no_grad():
        for module in (lora, loha):
            branch = module_branch(module, conv, weight=0.5)
            expected = nn.functional.conv2d(
                x, 0.5 * module.delta(shape=conv.weight.shape), None, 2, 1
            )
            assert torch.allclose(branch(conv, x), expected, atol=1e-4)
            gates = GateBank(FusionConfig(layers={"conv": 8}))
            _forced_open(gates)
            fused = gates.gate("conv")(conv(x), [branch(conv, x)], dim=1)
            merged = conv.weight + 0.5 * module.delta(shape=conv.weight.shape)
            assert torch.allclose(
                fused, nn.functional.conv2d(x, merged, conv.bias, 2, 1), atol=1e-4
            )


def _truncated_svd(delta: torch.Tensor, rank: int) -> torch.Tensor:
    u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    return ((u[:, :rank] * s[:rank]) @ vh[:rank]).float()


def test_global_lora_is_the_truncated_svd_of_the_summed_deltas():
    linear = nn.Linear(20, 24)
    modules = [_lora(24, 20, 3, seed=1, alpha=1.5), _lora(24, 20, 5, seed=2)]
    weights = [0.7, 1.0]
    branches = [module_branch(m, linear, w) for m, w in zip(modules, weights, strict=True)]
    summed = sum(w * m.delta() for m, w in zip(modules, weights, strict=True))
    for rank in (1, 4, 8):
        extra = global_branch(branches, rank)
        assert extra.up.shape == (24, rank) and extra.down.shape == (rank, 20)
        assert torch.allclose(extra.delta(), _truncated_svd(summed, rank), atol=1e-4)
    full = global_branch(branches, 100)  # rank capped at the stacked rank: the exact sum
    assert full.up.shape[1] == 8 and torch.allclose(full.delta(), summed, atol=1e-4)
    assert global_branch(branches, 0) is None


def test_global_lora_of_dense_deltas():
    g = torch.Generator().manual_seed(0)
    low = [torch.randn(30, 2, generator=g) @ torch.randn(2, 16, generator=g) for _ in range(2)]
    branches = [Branch(d) for d in low]  # dense: the summed delta has rank 4
    extra = global_branch(branches, 3)
    assert torch.allclose(extra.delta(), _truncated_svd(low[0] + low[1], 3), atol=1e-4)


def test_global_branch_is_used_in_the_pipeline(pipe):
    adapters = [tiny_lora_adapter(pipe, 1), tiny_lora_adapter(pipe, 2, rank=2)]
    layers = fusion_layers(pipeline_components(pipe), adapters, global_rank=4)
    branches = layers[LAYER].branches
    assert len(branches) == 3 and branches[2].up.shape[1] == 4
    summed = branches[0].delta() + branches[1].delta()
    assert torch.allclose(branches[2].delta(), _truncated_svd(summed, 4), atol=1e-5)


def test_hooks_removed_leave_the_pipeline_bit_identical(pipe):
    adapters = [tiny_lora_adapter(pipe, 1), tiny_lora_adapter(pipe, 2, rank=2)]
    state = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    before = _images(pipe)
    with gated_fusion(pipe, adapters, None) as handle:
        assert handle.installed and len(handle.layers) == 176
        fused = _images(pipe)
    assert not handle.installed
    assert not (fused - before).abs().max() < 1e-3  # the fusion did change the images
    assert torch.equal(_images(pipe), before)
    with pytest.raises(RuntimeError, match="boom"), gated_fusion(pipe, adapters, None):
        raise RuntimeError("boom")
    assert torch.equal(_images(pipe), before)
    modules = [*pipe.unet.modules(), *pipe.text_encoder.modules()]
    assert not any(m._forward_hooks for m in modules)
    assert all(torch.equal(v, state[k]) for k, v in pipe.unet.state_dict().items())


def test_loras_of_another_model_are_refused_before_anything_is_installed(pipe):
    good = tiny_lora_adapter(pipe, 1)
    bad = Adapter(
        format="kohya-lora",
        family=None,
        modules={"unet.no_such_block.to_q": _lora(4, 4, 1, seed=0)},
        source="alien.safetensors",
    )
    with (
        pytest.raises(UnmatchedKeysError, match=r"alien\.safetensors: 1 key"),
        gated_fusion(pipe, [good, bad], None),
    ):
        pass
    assert not any(m._forward_hooks for m in pipe.unet.modules())


def test_gates_of_another_architecture_are_refused(pipe):
    adapters = [tiny_lora_adapter(pipe, 1)]
    wrong = GateBank(FusionConfig(layers={LAYER: 7}))
    from tools.autolora.errors import AutoLoRACheckpointError

    with (
        pytest.raises(AutoLoRACheckpointError, match="width 7, the layer has 32"),
        gated_fusion(pipe, adapters, wrong),
    ):
        pass
    assert not any(m._forward_hooks for m in pipe.unet.modules())
