"""Each ablation switch changes the encoder's input as intended, and only that."""

from __future__ import annotations

import torch

from planner.activation import CALIBRATED, MATCHES, NEAR, activate, reverse
from planner.features import InputFeatures
from tests.planner.helpers import toy_config, toy_subgraph, unit

PROMPT = unit(99)


def inputs(**overrides):
    config = toy_config(**overrides)
    data = activate(toy_subgraph(), PROMPT, config)
    features = InputFeatures(config)
    return data, features, *features.typed(data)


def test_default_passes_features_through_with_kind_and_match_similarity():
    data, _, x, edges = inputs()
    kinds = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    torch.testing.assert_close(x["expert"], torch.cat([data["expert"].x, kinds], dim=1))
    torch.testing.assert_close(x["ref"], data["ref"].x)
    torch.testing.assert_close(edges[CALIBRATED], data[CALIBRATED].edge_attr)
    torch.testing.assert_close(edges[NEAR], data[NEAR].edge_attr)
    sims = torch.nn.functional.cosine_similarity(data["expert"].x, PROMPT[None], dim=1)
    torch.testing.assert_close(edges[MATCHES][:, 0], sims)
    torch.testing.assert_close(edges[reverse(MATCHES)], edges[MATCHES])


def test_zero_expert_features_drop_the_description_everywhere():
    data, _, x, edges = inputs(expert_features="zero")
    assert bool((x["expert"][:, :8] == 0).all())
    torch.testing.assert_close(x["ref"], data["ref"].x)  # other nodes untouched
    assert bool((edges[MATCHES] == 0).all())  # no similarity without a description
    torch.testing.assert_close(edges[CALIBRATED], data[CALIBRATED].edge_attr)


def test_learnable_expert_features_are_trained_rows_per_known_id():
    _, features, x, edges = inputs(expert_features="learnable", expert_vocab=["l0", "c0"])
    table = features.expert_table.weight
    torch.testing.assert_close(x["expert"][:, :8], table[[2, 1, 0]])  # l1 is unknown: row 0
    loss = x["expert"].sum()
    loss.backward()
    assert table.grad is not None and bool((table.grad[:3] != 0).any())
    sims = torch.nn.functional.cosine_similarity(table[[2, 1, 0]], PROMPT[None], dim=1)
    torch.testing.assert_close(edges[MATCHES][:, 0], sims)


def test_parameter_features_replace_the_description_and_drop_the_similarity():
    config = toy_config(expert_features="parameters")
    weights_x = torch.eye(8)[:3]
    data = activate(toy_subgraph(), PROMPT, config, expert_x=weights_x)
    x, edges = InputFeatures(config).typed(data)
    torch.testing.assert_close(x["expert"][:, :8], weights_x)
    assert bool((edges[MATCHES] == 0).all())  # weights do not live in the prompt's space


def test_no_edge_features_zero_the_scores_but_keep_the_edges():
    data, _, _, edges = inputs(edge_features="none")
    original = data[CALIBRATED].edge_attr
    assert bool((edges[CALIBRATED][:, :4] == 0).all())
    torch.testing.assert_close(edges[CALIBRATED][:, 4], original[:, 4])
    torch.testing.assert_close(edges[reverse(CALIBRATED)], edges[CALIBRATED])
    torch.testing.assert_close(edges[NEAR], data[NEAR].edge_attr)


def test_learnable_edge_features_replace_the_scores_with_one_trained_vector():
    _, features, _, edges = inputs(edge_features="learnable")
    expected = features.edge_value.detach().expand(4, -1)
    torch.testing.assert_close(edges[CALIBRATED][:, :4], expected)
    assert bool((edges[CALIBRATED][:, 4] == 1).all())
    edges[CALIBRATED].sum().backward()
    torch.testing.assert_close(features.edge_value.grad, torch.full((4,), 4.0))  # 4 edges


def test_a_graph_without_calibration_edges_still_encodes():
    """A graph nobody calibrated yet: no edges and no metrics."""
    uncalibrated = toy_subgraph(metrics=())
    uncalibrated.edge_index = torch.zeros((2, 0), dtype=torch.long)
    uncalibrated.edge_attr = torch.zeros((0, 0))
    uncalibrated.edge_mask = torch.zeros((0, 0), dtype=torch.bool)
    config = toy_config(metrics=[])
    data = activate(uncalibrated, PROMPT, config)
    encoded = InputFeatures(config)(data)
    assert data[CALIBRATED].edge_index.shape == (2, 0)
    assert encoded.x.shape[0] == 3 + 3 + 1
    # the other relations keep their edges and their similarity blocks
    assert encoded.edge_index.shape[1] == encoded.edge_attr.shape[0] > 0
