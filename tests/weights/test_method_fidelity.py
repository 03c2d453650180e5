"""Merge methods against their references (peft's merge utils, mergekit's TIES convention),
per-layer DARE masks, and deltas computed in float32 from half-precision factors."""

from __future__ import annotations

import pytest
import torch
from peft.utils import merge_utils

from tests.weights.conftest import randn
from tools.weights.adapter import AdapterModule
from tools.weights.combine import combined_delta
from tools.weights.methods import REGISTRY, layer_seed, method_params

WEIGHTS = [0.7, -0.4, 1.3]


def tensors(shape=(24, 16), seed=0) -> list[torch.Tensor]:
    return [randn(*shape, seed=seed + i) for i in range(3)]


def merge(name: str, params: dict, experts, weights=WEIGHTS, layer: str = "") -> torch.Tensor:
    method = REGISTRY[name]
    return method.combine(experts, weights, method_params(name, params), layer)


def mergekit_ties(experts, weights, density, sign="total"):
    """mergekit's generalized task arithmetic (TIES, normalize=True), written out in fp64."""
    k = int(density * experts[0].numel())
    pruned = []
    for t in experts:
        keep = torch.zeros(t.numel(), dtype=torch.bool)
        keep[t.abs().flatten().topk(k).indices] = True
        pruned.append(torch.where(keep.reshape(t.shape), t, 0).double())
    w = torch.tensor(weights, dtype=torch.float64).view(-1, 1, 1)
    weighted = torch.stack(pruned) * w
    votes = weighted.sum(0) if sign == "total" else weighted.sign().sum(0)
    mask = weighted.sign() == torch.where(votes >= 0, 1.0, -1.0)
    divisor = (w * mask).sum(0)
    divisor[divisor == 0] = 1
    return (weighted * mask).sum(0) / divisor


@pytest.mark.parametrize("sign", ["total", "frequency"])
def test_ties_peft_convention_equals_peft(sign):
    experts = tensors()
    got = merge("ties", {"density": 0.3, "convention": "peft", "sign": sign}, experts)
    expected = merge_utils.ties(experts, torch.tensor(WEIGHTS), 0.3, sign)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("sign", ["total", "frequency"])
def test_ties_mergekit_convention_equals_mergekit(sign):
    experts = tensors(seed=5)
    got = merge("ties", {"density": 0.3, "sign": sign}, experts)
    torch.testing.assert_close(
        got.double(), mergekit_ties(experts, WEIGHTS, 0.3, sign), rtol=1e-6, atol=1e-6
    )
    peft = merge("ties", {"density": 0.3, "convention": "peft", "sign": sign}, experts)
    assert not torch.allclose(got, peft)  # the conventions differ (negative weight here)


def test_magnitude_prune_equals_peft():
    experts = tensors(seed=11)
    got = merge("magnitude_prune", {"density": 0.25}, experts)
    expected = merge_utils.magnitude_prune(experts, torch.tensor(WEIGHTS), 0.25)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_dare_equals_peft_dare_linear_under_the_layer_seed():
    experts = tensors(seed=21)
    got = merge("dare", {"drop_rate": 0.6, "seed": 4}, experts, layer="unet.x.to_q.weight")
    with torch.random.fork_rng():
        torch.manual_seed(layer_seed(4, "unet.x.to_q.weight"))
        expected = merge_utils.dare_linear(experts, torch.tensor(WEIGHTS), 0.4)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("convention", ["peft", "mergekit"])
def test_dare_ties_equals_peft_dare_ties(convention):
    experts = tensors(seed=31)
    params = {"drop_rate": 0.5, "seed": 1, "convention": convention}
    got = merge("dare_ties", params, experts, layer="te.q")
    with torch.random.fork_rng():
        torch.manual_seed(layer_seed(1, "te.q"))
        pruned = [merge_utils.prune(t, 0.5, "random", rescale=True) for t in experts]
    if convention == "peft":
        expected = merge_utils.disjoint_merge(
            torch.stack(pruned) * torch.tensor(WEIGHTS).view(-1, 1, 1),
            merge_utils.calculate_majority_sign_mask(torch.stack(pruned)),
        )
        with torch.random.fork_rng():
            torch.manual_seed(layer_seed(1, "te.q"))
            assert torch.allclose(
                merge_utils.dare_ties(experts, torch.tensor(WEIGHTS), 0.5), expected
            )
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    else:  # mergekit's disjoint merge of the same pruned tensors (density 1: no trimming)
        torch.testing.assert_close(
            got.double(), mergekit_ties(pruned, WEIGHTS, 1.0), rtol=1e-6, atol=1e-6
        )


def test_dare_masks_differ_between_layers_of_one_shape():
    same = [torch.ones(64, 64)] * 2
    params = {"drop_rate": 0.5, "seed": 0}
    q = merge("dare", params, same, [1.0, 1.0], layer="unet.a.to_q.weight")
    k = merge("dare", params, same, [1.0, 1.0], layer="unet.a.to_k.weight")
    assert not torch.equal(q != 0, k != 0)  # each layer draws its own mask
    assert torch.equal(q, merge("dare", params, same, [1.0, 1.0], layer="unet.a.to_q.weight"))
    one = merge("dare", params, same[:1], [1.0], layer="unet.a.to_q.weight")
    assert not torch.equal(q, 2 * one)  # experts of one layer get different masks too
    other_seed = merge("dare", {**params, "seed": 1}, same, [1.0, 1.0], "unet.a.to_q.weight")
    assert not torch.equal(q, other_seed)


def _relative_error(got: torch.Tensor, reference: torch.Tensor) -> float:
    return ((got.double() - reference).norm() / reference.norm()).item()


def _half(module: AdapterModule) -> AdapterModule:
    return AdapterModule(
        module.kind,
        {k: v.half() for k, v in module.factors.items()},
        module.alpha,
        None if module.dora_scale is None else module.dora_scale.half(),
    )


def _double(module: AdapterModule) -> AdapterModule:
    return AdapterModule(
        module.kind,
        {k: v.double() for k, v in module.factors.items()},
        module.alpha,
        None if module.dora_scale is None else module.dora_scale.double(),
    )


HALF_MODULES = {
    "lokr": AdapterModule(
        "lokr", {"w1": randn(8, 4, seed=1), "w2_a": randn(40, 4, seed=2), "w2_b": randn(4, 48)}, 2.0
    ),
    "loha": AdapterModule(
        "loha",
        {
            "w1_a": randn(320, 8, seed=3),
            "w1_b": randn(8, 320, seed=4),
            "w2_a": randn(320, 8, seed=5),
            "w2_b": randn(8, 320, seed=6),
        },
        4.0,
    ),
    "tucker-locon": AdapterModule(
        "lora",
        {
            "up": randn(64, 8, 1, 1, seed=7),
            "mid": randn(8, 8, 3, 3, seed=8),
            "down": randn(8, 32, 1, 1, seed=9),
        },
        8.0,
    ),
    "dora": AdapterModule(
        "lora",
        {"up": randn(320, 16, seed=10), "down": randn(16, 320, seed=11)},
        16.0,
        dora_scale=randn(320, 1, seed=12).abs() + 0.5,
    ),
}


@pytest.mark.parametrize("kind", sorted(HALF_MODULES))
def test_half_precision_factors_give_float32_accurate_deltas(kind):
    module = _half(HALF_MODULES[kind])
    shape = module.natural_shape()
    base = randn(*shape, seed=40).half()
    got = module.delta(base=base)
    reference = _double(module).delta(base=base.double())
    assert got.dtype == torch.float32
    assert _relative_error(got, reference) < 1e-6  # fp16 arithmetic: ~1e-3


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("ties", {"density": 1.0}),
        ("dare", {"drop_rate": 0.0}),
        ("dare_ties", {"drop_rate": 0.0}),
        ("magnitude_prune", {"density": 1.0}),
        ("klora", {"keep": 2}),
    ],
)
def test_non_linear_methods_merge_half_loras_in_float32(name, params):
    modules = [
        AdapterModule("lora", {"up": randn(96, 8, seed=i), "down": randn(8, 80, seed=9 + i)}, 4.0)
        for i in range(2)
    ]
    base = torch.zeros(96, 80)
    options = method_params(name, params)
    got = combined_delta([_half(m) for m in modules], [0.6, 0.8], REGISTRY[name], options, base)
    reference = REGISTRY[name].combine(
        [_double(_half(m)).delta() for m in modules], [0.6, 0.8], options, ""
    )
    assert got.dtype == torch.float32
    assert _relative_error(got, reference) < 1e-6
