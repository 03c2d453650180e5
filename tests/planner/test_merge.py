"""Coefficients → merge weights (softmax within kinds) and the weights toolkit's plan."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from graph.records import BaseFamily, Expert, ExpertKind, WeightFile
from planner.errors import PlannerError
from planner.merge import merge_weights, to_merge_plan
from planner.planners import EqualPlanner, PlanRequest, PlanResult
from tests.planner.helpers import toy_subgraph, unit


def test_softmax_within_checkpoints_and_within_loras():
    coefficients = torch.tensor([0.2, 1.0, 0.0, 0.5, 0.0])
    kinds = ["peft", "ckpt", "peft", "ckpt", "peft"]
    weights = merge_weights(coefficients, kinds)
    ckpt = [math.exp(1.0), math.exp(0.5)]
    lora = [math.exp(0.2), 1.0, 1.0]
    expected = [
        lora[0] / sum(lora),
        ckpt[0] / sum(ckpt),
        lora[1] / sum(lora),
        ckpt[1] / sum(ckpt),
        lora[2] / sum(lora),
    ]
    torch.testing.assert_close(weights, torch.tensor(expected))
    # leading sample dimensions normalise row by row
    batched = merge_weights(torch.stack([coefficients, torch.zeros(5)]), kinds)
    torch.testing.assert_close(batched[0], weights)
    torch.testing.assert_close(batched[1], torch.tensor([1 / 3, 0.5, 1 / 3, 0.5, 1 / 3]))


def test_merge_weights_rejects_bad_inputs():
    with pytest.raises(ValueError, match="2 coefficients for 3 experts"):
        merge_weights(torch.zeros(2), ["ckpt", "peft", "peft"])
    with pytest.raises(ValueError, match="unknown"):
        merge_weights(torch.zeros(1), ["vae"])


def expert(expert_id: str, kind: str, path: str | None) -> Expert:
    return Expert(
        id=expert_id,
        kind=ExpertKind(kind),
        base=BaseFamily.SD15,
        name=f"name of {expert_id}",
        file=WeightFile(path=path) if path else None,
    )


def plan_result() -> PlanResult:
    request = PlanRequest("a cat", unit(99), toy_subgraph())
    return PlanResult.from_coefficients(request, "test", "learned", torch.tensor([0.9, 0.25, 0.75]))


def test_to_merge_plan_groups_experts_with_their_coefficients(tmp_path):
    records = [expert("l1", "peft", "/w/l1.safetensors"), expert("c0", "ckpt", "/w/c0")]
    records.append(expert("l0", "peft", "/w/l0.safetensors"))
    plan = to_merge_plan(plan_result(), records)
    assert [(e.expert_id, e.coefficient, e.path) for e in plan.checkpoints] == [
        ("c0", 0.8999999761581421, Path("/w/c0"))
    ]
    assert [(e.expert_id, e.coefficient) for e in plan.loras] == [
        ("l0", 0.25),
        ("l1", 0.75),
    ]
    assert plan.normalize == "softmax" and plan.method == "diffgraph"
    assert plan.loras[0].name == "name of l0"
    # the toolkit's softmax gives the weights the plan result shows
    result = plan_result()
    assert plan.lora_weights() == pytest.approx([e.merge_weight for e in result.experts[1:]])


def test_to_merge_plan_needs_records_with_files():
    records = [expert("c0", "ckpt", "/w/c0"), expert("l0", "peft", None)]
    with pytest.raises(PlannerError, match="no expert record"):
        to_merge_plan(plan_result(), records)
    records.append(expert("l1", "peft", "/w/l1"))
    with pytest.raises(PlannerError, match="'l0' has no downloaded weights"):
        to_merge_plan(plan_result(), records)


def test_plan_result_from_a_baseline():
    result = EqualPlanner().plan(PlanRequest("a cat", unit(99), toy_subgraph()))
    assert [e.coefficient for e in result.experts] == [0.5, 0.5, 0.5]
    assert [e.merge_weight for e in result.experts] == [1.0, 0.5, 0.5]
    assert result.mode == "equal" and result.planner == "equal" and not result.demo
