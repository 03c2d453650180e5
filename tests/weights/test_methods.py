"""Merge methods on hand-made tensors; plans from Python and from config files."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tools.weights.errors import MergeConfigError
from tools.weights.methods import (
    REGISTRY,
    DareParams,
    KLoraParams,
    TaskArithmeticParams,
    TiesParams,
    dare,
    klora,
    mean,
    method_params,
    normalized,
    ties,
    trim,
    weighted_sum,
)
from tools.weights.plan import MergePlan, WeightedExpert, parse_weighted, plan_from_options

A = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
B = torch.tensor([[-1.5, 4.0], [1.0, -0.5]])
C = torch.tensor([[2.0, 1.0], [-3.0, 0.25]])


def test_softmax_weights_are_the_papers():
    weights = normalized([0.7, 0.3], "softmax")
    e7, e3 = math.exp(0.7), math.exp(0.3)
    assert weights == pytest.approx([e7 / (e7 + e3), e3 / (e7 + e3)], abs=1e-15)
    assert normalized([0.7, 0.3], "raw") == [0.7, 0.3]
    assert normalized([], "softmax") == []


def test_diffgraph_is_a_weighted_sum():
    weights = normalized([0.7, 0.3], "softmax")
    expected = torch.zeros(2, 2)
    expected.add_(A, alpha=weights[0]).add_(B, alpha=weights[1])
    assert torch.equal(weighted_sum([A, B], weights), expected)
    assert REGISTRY["diffgraph"].combine is weighted_sum


def test_equal_ignores_coefficients():
    assert torch.equal(mean([A, B], [0.9, 0.1]), (A + B) / 2)


def test_task_arithmetic_scales_the_sum():
    got = REGISTRY["task_arithmetic"].combine([A, B], [1.0, 1.0], TaskArithmeticParams(scale=0.5))
    assert torch.equal(got, (A + B) * 0.5)


def test_trim_keeps_the_largest_magnitudes():
    assert torch.equal(trim(A, 0.5), torch.tensor([[0.0, -2.0], [3.0, 0.0]]))
    assert torch.equal(trim(A, 1.0), A)


def test_ties_by_hand():
    # trim to 50% (2 of 4 entries): A -> [[0,-2],[3,0]]
    tb, tc = trim(B, 0.5), trim(C, 0.5)
    assert torch.equal(tb, torch.tensor([[-1.5, 4.0], [0.0, 0.0]]))
    assert torch.equal(tc, torch.tensor([[2.0, 0.0], [-3.0, 0.0]]))
    got = ties([A, B, C], [1.0, 1.0, 1.0], TiesParams(density=0.5))
    # entry (0,0): values 0,-1.5,2 -> sign + -> mean of agreeing nonzero {2} = 2
    # entry (0,1): -2,4,0 -> sign + -> {4} = 4
    # entry (1,0): 3,0,-3 -> sum 0 -> sign + (peft and mergekit elect + on a tie) -> {3}
    # entry (1,1): all trimmed -> 0
    assert torch.equal(got, torch.tensor([[2.0, 4.0], [3.0, 0.0]]))
    weighted = ties([A, C], [0.25, 0.75], TiesParams(density=1.0, scale=2.0))
    # (0,0): 0.25*1 + 0.75*2 > 0 -> both agree -> (0.25+1.5)/1 = 1.75 -> x2
    assert weighted[0, 0].item() == pytest.approx(3.5)
    # (0,1): -0.5 + 0.75 > 0 -> only C agrees -> 0.75*1/0.75 = 1 -> x2
    assert weighted[0, 1].item() == pytest.approx(2.0)


def test_dare_drops_and_rescales_deterministically():
    big = torch.ones(200, 200)
    params = DareParams(drop_rate=0.75, seed=3)
    out = dare([big], [1.0], params)
    kept = out != 0
    assert torch.equal(out[kept], torch.full_like(out[kept], 4.0))
    assert 0.2 < kept.float().mean().item() < 0.3
    assert torch.equal(out, dare([big], [1.0], params))
    assert not torch.equal(out, dare([big], [1.0], DareParams(drop_rate=0.75, seed=4)))
    assert torch.equal(
        dare([A, B], [0.5, 0.5], DareParams(drop_rate=0.0)), weighted_sum([A, B], [0.5, 0.5])
    )


def test_klora_keeps_the_delta_with_the_largest_top_k_magnitudes():
    small_but_spread = torch.full((2, 2), 1.5)
    one_spike = torch.tensor([[5.0, 0.0], [0.0, 0.0]])
    assert torch.equal(
        klora([small_but_spread, one_spike], [1.0, 1.0], KLoraParams(top_k=1)), one_spike
    )
    assert torch.equal(
        klora([small_but_spread, one_spike], [1.0, 1.0], KLoraParams(top_k=4)), small_but_spread
    )
    # coefficients scale the deltas before scoring
    assert torch.equal(
        klora([small_but_spread, one_spike], [1.0, 0.1], KLoraParams(top_k=1)), small_but_spread
    )
    both = klora([A, B], [1.0, 1.0], KLoraParams(top_k=1, keep=2))
    assert torch.equal(both, A + B)


def test_klora_keep_total_applies_the_chosen_delta_at_the_merge_s_whole_strength():
    small_but_spread = torch.full((2, 2), 1.5)
    one_spike = torch.tensor([[5.0, 0.0], [0.0, 0.0]])
    params = KLoraParams(top_k=1, keep_total=True)
    # equal shares of ½: the spike wins and is applied at ½ + ½ = 1
    assert torch.equal(klora([small_but_spread, one_spike], [0.5, 0.5], params), one_spike)
    assert torch.equal(
        klora([small_but_spread, one_spike], [0.5, 0.5], KLoraParams(top_k=1)), one_spike * 0.5
    )
    assert torch.equal(klora([A], [0.25], params), A * 0.25)  # one delta: unchanged
    zero = klora([A, B], [0.0, 0.0], params)
    assert torch.equal(zero, torch.zeros_like(A))


def test_method_params_are_validated():
    assert method_params("ties", {"density": 0.3}) == TiesParams(density=0.3)
    with pytest.raises(MergeConfigError, match="density"):
        method_params("ties", {"density": 0})
    with pytest.raises(MergeConfigError, match="accepted: drop_rate, seed, scale"):
        method_params("dare", {"dropout": 0.1})
    with pytest.raises(MergeConfigError, match="unknown merge method 'slerp'"):
        method_params("slerp")


def test_plan_weights_and_recipe_hash(tmp_path):
    for name, data in (("a", b"one"), ("b", b"two"), ("l", b"lora")):
        (tmp_path / f"{name}.safetensors").write_bytes(data)
    plan = MergePlan(
        checkpoints=[
            WeightedExpert(path=tmp_path / "a.safetensors", coefficient=0.7),
            WeightedExpert(path=tmp_path / "b.safetensors", coefficient=0.3),
        ],
        loras=[WeightedExpert(path=tmp_path / "l.safetensors", coefficient=1.2, name="x")],
    )
    assert plan.checkpoint_weights() == normalized([0.7, 0.3], "softmax")
    assert plan.lora_weights() == [1.0]
    digest = plan.recipe_hash()
    assert len(digest) == 64 and digest == plan.recipe_hash()
    renamed = plan.model_copy(update={"loras": [plan.loras[0].model_copy(update={"name": "y"})]})
    assert renamed.recipe_hash() == digest  # names do not change the weights
    assert plan.model_copy(update={"method": "equal"}).recipe_hash() != digest
    bumped = plan.model_copy(
        update={"loras": [plan.loras[0].model_copy(update={"coefficient": 1.3})]}
    )
    assert bumped.recipe_hash() != digest
    (tmp_path / "l.safetensors").write_bytes(b"other lora")
    assert plan.recipe_hash() != digest  # file contents are part of the recipe


def test_plan_from_yaml_and_json_config(tmp_path):
    (tmp_path / "m.safetensors").write_bytes(b"x")
    (tmp_path / "plan.yaml").write_text(
        "checkpoints:\n  - {path: m.safetensors, coefficient: 0.5}\nmethod: ties\n"
        "normalize: raw\nparams: {density: 0.4}\n"
    )
    plan = MergePlan.from_file(tmp_path / "plan.yaml")
    assert plan.checkpoints[0].path == tmp_path / "m.safetensors"
    assert plan.method == "ties" and plan.params == {"density": 0.4}
    (tmp_path / "plan.json").write_text(json.dumps(plan.model_dump(mode="json")))
    assert MergePlan.from_file(tmp_path / "plan.json") == plan
    (tmp_path / "bad.yaml").write_text("method: ties\nparams: {density: 7}\ncheckpoints: []\n")
    with pytest.raises(MergeConfigError, match=r"bad\.yaml"):
        MergePlan.from_file(tmp_path / "bad.yaml")


def test_command_line_specs():
    assert parse_weighted("a/b.safetensors:0.7").coefficient == 0.7
    assert parse_weighted("C:/x.safetensors").coefficient == 1.0
    plan = plan_from_options(
        ["a.safetensors:1"], ["l.safetensors:-0.5"], "dare", "raw", ["drop_rate=0.2"]
    )
    assert plan.params == {"drop_rate": 0.2} and plan.loras[0].coefficient == -0.5
    with pytest.raises(MergeConfigError, match="KEY=VALUE"):
        plan_from_options([], ["l:1"], "dare", "raw", ["drop_rate"])
    with pytest.raises(MergeConfigError, match="at least one"):
        plan_from_options([], [], "diffgraph", "softmax", [])


@pytest.mark.parametrize("name", ["diffgraph", "equal", "task_arithmetic"])
def test_linear_methods_declare_their_coefficients(name):
    method = REGISTRY[name]
    options = method_params(name, {"scale": 0.5} if name == "task_arithmetic" else {})
    coefficients = method.linear([0.7, 0.2, 0.1], options)
    expected = weighted_sum([A, B, C], coefficients)
    torch.testing.assert_close(method.combine([A, B, C], [0.7, 0.2, 0.1], options), expected)
    assert all(REGISTRY[n].linear is None for n in ("ties", "dare", "klora"))


def test_stacked_lora_factors_give_the_weighted_sum_of_deltas():
    from tests.weights.conftest import randn
    from tools.weights.adapter import AdapterModule
    from tools.weights.combine import combined_delta, stacked_lora_delta

    modules = [
        AdapterModule(
            "lora",
            {"up": randn(6, 2, 1, 1, seed=i), "down": randn(2, 3, 3, 3, seed=9 + i)},
            alpha=float(i + 1),
        )
        for i in range(3)
    ]
    weights = [0.5, -1.0, 2.0]
    expected = weighted_sum([m.delta() for m in modules], weights)
    torch.testing.assert_close(stacked_lora_delta(modules, weights), expected, rtol=1e-6, atol=1e-6)
    base = torch.zeros(6, 3, 3, 3)
    fast = combined_delta(modules, weights, REGISTRY["diffgraph"], None, base)
    torch.testing.assert_close(fast, expected, rtol=1e-6, atol=1e-6)
    dora = AdapterModule(
        "lora", {"up": randn(6, 2), "down": randn(2, 27)}, dora_scale=torch.ones(6, 1)
    )
    assert stacked_lora_delta([modules[0], dora], [1.0, 1.0]) is None
    ties_params = method_params("ties", {"density": 0.5})
    slow = combined_delta(modules, weights, REGISTRY["ties"], ties_params, base)
    assert torch.equal(slow, ties([m.delta(base=base) for m in modules], weights, ties_params))
