"""Subgraph activation: the prompt node, its wiring, and the edge features (exact)."""

from __future__ import annotations

import pytest
import torch

from planner.activation import (
    CALIBRATED,
    MATCHES,
    NEAR,
    activate,
    calibration_dim,
    fit_metric_scales,
    reverse,
)
from planner.errors import CheckpointError, PlannerError
from tests.planner.helpers import toy_config, toy_subgraph, unit


def test_nodes_and_prompt_wiring_to_top_m_similar_references():
    sub = toy_subgraph()
    prompt = 0.9 * sub.ref_x[2] + 0.1 * sub.ref_x[0]
    data = activate(sub, prompt, toy_config())

    torch.testing.assert_close(data["expert"].x, sub.expert_x)
    torch.testing.assert_close(data["ref"].x, sub.ref_x)
    torch.testing.assert_close(data["prompt"].x, prompt[None])
    assert data["expert"].kind.tolist() == [0, 1, 1]
    assert data.expert_ids == ["c0", "l0", "l1"]

    sims = torch.nn.functional.cosine_similarity(sub.ref_x, prompt[None], dim=1)
    top = torch.topk(sims, 2).indices
    assert top.tolist()[0] == 2
    assert data[NEAR].edge_index.tolist() == [[0, 0], top.tolist()]
    torch.testing.assert_close(data[NEAR].edge_attr[:, 0], sims[top])
    assert data[reverse(NEAR)].edge_index.tolist() == [top.tolist(), [0, 0]]
    # the prompt reaches every expert; the similarity is filled in by the model
    assert data[MATCHES].edge_index.tolist() == [[0, 0, 0], [0, 1, 2]]


def test_calibration_edges_are_standardised_with_measured_flags():
    sub = toy_subgraph()
    data = activate(sub, unit(99), toy_config())
    assert data[CALIBRATED].edge_index.tolist() == sub.edge_index.tolist()
    assert data[reverse(CALIBRATED)].edge_index.tolist() == sub.edge_index.flip(0).tolist()
    # m1 scaled (x - 1) / 2, m2 as is; (l1, r2) did not measure m1
    expected = torch.tensor(
        [
            [0.0, 2.0, 1.0, 1.0, 1.0],
            [1.0, 4.0, 1.0, 1.0, 1.0],
            [2.0, 6.0, 1.0, 1.0, 1.0],
            [0.0, 8.0, 0.0, 1.0, 1.0],
        ]
    )
    torch.testing.assert_close(data[CALIBRATED].edge_attr, expected)
    assert data[CALIBRATED].edge_attr.shape[1] == calibration_dim(2)


def test_metric_columns_follow_the_planner_order():
    sub = toy_subgraph()
    swapped = toy_config(metrics=list(reversed(toy_config().metrics)))
    data = activate(sub, unit(99), swapped)
    torch.testing.assert_close(data[CALIBRATED].edge_attr[1, :2], torch.tensor([4.0, 1.0]))


def test_top_m_larger_than_references_and_no_references():
    sub = toy_subgraph()
    data = activate(sub, unit(99), toy_config(prompt_top_m=10))
    assert data[NEAR].edge_index.shape == (2, 3)
    empty = toy_subgraph()
    empty.ref_ids, empty.ref_x = [], torch.zeros(0, 8)
    empty.edge_index = torch.zeros(2, 0, dtype=torch.long)
    empty.edge_attr, empty.edge_mask = torch.zeros(0, 2), torch.zeros(0, 2, dtype=torch.bool)
    data = activate(empty, unit(99), toy_config())
    assert data[NEAR].edge_index.shape == (2, 0) and data[CALIBRATED].edge_attr.shape == (0, 5)


def test_different_metrics_are_an_error_naming_the_dims():
    sub = toy_subgraph(metrics=("m1",))
    with pytest.raises(CheckpointError, match=r"dim 5\) but the graph has \['m1'\] \(dim 3\)"):
        activate(sub, unit(99), toy_config())


def test_graph_without_calibration_fits_any_planner():
    sub = toy_subgraph()
    sub.metric_names = []
    sub.edge_index = torch.zeros(2, 0, dtype=torch.long)
    sub.edge_attr, sub.edge_mask = torch.zeros(0, 0), torch.zeros(0, 0, dtype=torch.bool)
    data = activate(sub, unit(99), toy_config())
    assert data[CALIBRATED].edge_attr.shape == (0, 5)


def test_bad_inputs_are_clear_errors():
    sub = toy_subgraph()
    with pytest.raises(PlannerError, match="expects 8"):
        activate(sub, torch.zeros(5), toy_config())
    sub.expert_kinds = ["ckpt", "vae", "peft"]
    with pytest.raises(PlannerError, match="unknown"):
        activate(sub, unit(99), toy_config())


def test_fit_metric_scales_uses_measured_values_only():
    scales = fit_metric_scales(toy_subgraph())
    assert [s.name for s in scales] == ["m1", "m2"]
    assert scales[0].mean == pytest.approx(3.0)  # 1, 3, 5 (the 0 was not measured)
    assert scales[0].std == pytest.approx((8 / 3) ** 0.5)
    assert scales[1].mean == pytest.approx(5.0)
