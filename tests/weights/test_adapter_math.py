"""Exact math of every adapter algorithm on small hand-made tensors."""

from __future__ import annotations

import pytest
import torch

from tests.weights.conftest import randn
from tools.weights.adapter import Adapter, AdapterModule


def test_lora_linear_is_scaled_up_times_down():
    up = torch.tensor([[1.0, 2.0], [0.0, -1.0], [3.0, 1.0]])
    down = torch.tensor([[1.0, 0.0, 2.0, 1.0], [0.0, 1.0, -1.0, 2.0]])
    module = AdapterModule("lora", {"up": up, "down": down}, alpha=1.0)
    assert module.rank == 2 and module.scale == 0.5
    expected = (
        torch.tensor([[1.0, 2.0, 0.0, 5.0], [0.0, -1.0, 1.0, -2.0], [3.0, 1.0, 5.0, 5.0]]) * 0.5
    )
    assert torch.equal(module.delta(), expected)


def test_lora_without_alpha_has_scale_one():
    module = AdapterModule("lora", {"up": randn(3, 2), "down": randn(2, 4, seed=1)})
    assert module.scale == 1.0
    assert torch.equal(module.delta(), randn(3, 2) @ randn(2, 4, seed=1))


def test_locon_conv_3x3():
    up, down = randn(5, 2, 1, 1), randn(2, 3, 3, 3, seed=1)
    module = AdapterModule("lora", {"up": up, "down": down}, alpha=4.0)
    expected = torch.einsum("or,rihw->oihw", up[:, :, 0, 0], down) * 2.0
    torch.testing.assert_close(module.delta(), expected, rtol=0, atol=1e-6)
    assert module.natural_shape() == (5, 3, 3, 3)


def test_lora_mid_tucker_core():
    up, mid, down = randn(5, 2, 1, 1), randn(2, 2, 3, 3, seed=1), randn(2, 4, 1, 1, seed=2)
    module = AdapterModule("lora", {"up": up, "down": down, "mid": mid}, alpha=2.0)
    expected = torch.zeros(5, 4, 3, 3)
    for o in range(5):
        for i in range(4):
            for a in range(2):
                for b in range(2):
                    expected[o, i] += up[o, a, 0, 0] * mid[a, b] * down[b, i, 0, 0]
    torch.testing.assert_close(module.delta(), expected, rtol=0, atol=1e-5)


def test_loha_hadamard_of_two_products():
    w1a, w1b, w2a, w2b = randn(4, 2), randn(2, 3, seed=1), randn(4, 2, seed=2), randn(2, 3, seed=3)
    module = AdapterModule("loha", {"w1_a": w1a, "w1_b": w1b, "w2_a": w2a, "w2_b": w2b}, alpha=1.0)
    assert module.scale == 0.5
    assert torch.equal(module.delta(), (w1a @ w1b) * (w2a @ w2b) * 0.5)


def test_loha_matches_peft_implementation():
    from peft.tuners.loha.layer import make_weight, make_weight_cp

    w1a, w1b, w2a, w2b = randn(6, 3), randn(3, 5, seed=1), randn(6, 3, seed=2), randn(3, 5, seed=3)
    plain = AdapterModule("loha", {"w1_a": w1a, "w1_b": w1b, "w2_a": w2a, "w2_b": w2b})
    torch.testing.assert_close(
        plain.delta(), make_weight(w1a, w1b, w2a, w2b, torch.tensor(1.0)), rtol=0, atol=0
    )
    t1, t2 = randn(3, 3, 3, 3, seed=4), randn(3, 3, 3, 3, seed=5)
    cp_w1a, cp_w1b, cp_w2a, cp_w2b = (
        randn(3, 6),
        randn(3, 5, seed=6),
        randn(3, 6, seed=7),
        randn(3, 5, seed=8),
    )
    cp = AdapterModule(
        "loha",
        {"w1_a": cp_w1a, "w1_b": cp_w1b, "w2_a": cp_w2a, "w2_b": cp_w2b, "t1": t1, "t2": t2},
    )
    expected = make_weight_cp(t1, cp_w1a, cp_w1b, t2, cp_w2a, cp_w2b, torch.tensor(1.0))
    torch.testing.assert_close(cp.delta(), expected, rtol=1e-6, atol=1e-6)
    assert cp.natural_shape() == (6, 5, 3, 3)


def test_lokr_full_factors_ignore_alpha():
    w1, w2 = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[0.0, 1.0, 2.0]])
    module = AdapterModule("lokr", {"w1": w1, "w2": w2}, alpha=8.0)
    assert module.rank is None and module.scale == 1.0
    assert torch.equal(module.delta(), torch.kron(w1, w2))
    assert module.natural_shape() == (2, 6)


def test_lokr_low_rank_factor_is_scaled_by_its_rank():
    w1, w2a, w2b = randn(2, 2), randn(3, 2, seed=1), randn(2, 4, seed=2)
    module = AdapterModule("lokr", {"w1": w1, "w2_a": w2a, "w2_b": w2b}, alpha=1.0)
    assert module.rank == 2 and module.scale == 0.5
    torch.testing.assert_close(module.delta(), torch.kron(w1, w2a @ w2b) * 0.5, rtol=0, atol=0)


def test_lokr_matches_peft_with_tucker_core():
    from peft.tuners.lokr.layer import make_kron
    from peft.tuners.lokr.layer import make_weight_cp as lokr_cp

    w1a, w1b = randn(2, 1), randn(1, 2, seed=1)
    t2, w2a, w2b = randn(2, 2, 3, 3, seed=2), randn(2, 4, seed=3), randn(2, 3, seed=4)
    module = AdapterModule(
        "lokr", {"w1_a": w1a, "w1_b": w1b, "w2_a": w2a, "w2_b": w2b, "t2": t2}, alpha=2.0
    )
    expected = make_kron(w1a @ w1b, lokr_cp(t2, w2a, w2b), 1.0)
    torch.testing.assert_close(module.delta(), expected, rtol=1e-6, atol=1e-6)
    assert module.natural_shape() == tuple(expected.shape) == (8, 6, 3, 3)


def test_full_delta_and_bias():
    diff, bias = randn(3, 4), randn(3, seed=1)
    module = AdapterModule("full", {"diff": diff}, bias=bias)
    assert torch.equal(module.delta(), diff)
    assert torch.equal(module.bias_delta(), bias)


def test_delta_takes_the_target_shape():
    # LyCORIS stores conv LoHa factors flattened: the delta is reshaped to the weight
    module = AdapterModule(
        "loha",
        {"w1_a": randn(4, 1), "w1_b": randn(1, 18), "w2_a": randn(4, 1), "w2_b": randn(1, 18)},
    )
    assert module.delta().shape == (4, 18)
    assert module.delta(shape=(4, 2, 3, 3)).shape == (4, 2, 3, 3)
    assert module.fits((4, 2, 3, 3)) and not module.fits((4, 2, 3, 2))
    with pytest.raises(ValueError, match="cannot fill"):
        module.delta(shape=(4, 2, 3, 2))


def test_dora_on_output_rows_matches_peft_formula():
    base = randn(3, 4)
    up, down = randn(3, 2, seed=1), randn(2, 4, seed=2)
    magnitude = randn(3, seed=3).abs() + 0.5
    module = AdapterModule(
        "lora", {"up": up, "down": down}, alpha=4.0, dora_scale=magnitude.reshape(3, 1)
    )
    combined = base + 2.0 * (up @ down)
    expected = magnitude.reshape(3, 1) * combined / combined.norm(dim=1, keepdim=True) - base
    torch.testing.assert_close(module.delta(base=base), expected, rtol=0, atol=1e-6)


def test_dora_on_input_columns():
    base = randn(3, 4)
    up, down = randn(3, 2, seed=1), randn(2, 4, seed=2)
    magnitude = randn(1, 4, seed=3).abs() + 0.5
    module = AdapterModule("lora", {"up": up, "down": down}, dora_scale=magnitude)
    combined = base + up @ down
    expected = magnitude * combined / combined.norm(dim=0, keepdim=True) - base
    torch.testing.assert_close(module.delta(base=base), expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="base weight"):
        module.delta()


def test_factor_names_are_validated():
    with pytest.raises(ValueError, match="missing"):
        AdapterModule("lora", {"up": randn(2, 1)})
    with pytest.raises(ValueError, match="unexpected"):
        AdapterModule("full", {"diff": randn(2, 1), "up": randn(2, 1)})
    with pytest.raises(ValueError, match="w2 or w2_a"):
        AdapterModule("lokr", {"w1": randn(2, 1)})


def test_adapter_names_keep_clip_text_model_level():
    module = AdapterModule("lora", {"up": randn(2, 1), "down": randn(1, 2)})
    adapter = Adapter(
        "kohya-lora",
        None,
        {
            "text_encoder.encoder.layers.0.self_attn.q_proj": module,
            "unet.conv_in": module,
        },
    )
    assert sorted(adapter.modules) == [
        "text_encoder.text_model.encoder.layers.0.self_attn.q_proj",
        "unet.conv_in",
    ]
    assert adapter.components == ["text_encoder", "unet"] and adapter.ranks() == {1: 2}
