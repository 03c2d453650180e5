"""The network: shapes, Beta constraints, inference mean, batching and log P(w)."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch

from planner.activation import activate
from planner.decoder import BetaDecoder
from planner.model import MergingPlanner
from tests.planner.helpers import toy_config, toy_subgraph, unit


@pytest.fixture
def model():
    torch.manual_seed(0)
    return MergingPlanner(toy_config())


def test_shapes_and_beta_constraints(model):
    plan = model(activate(toy_subgraph(), unit(99), toy_config()))
    assert plan.alpha.shape == plan.beta.shape == (3,)
    assert plan.graph.tolist() == [0, 0, 0] and plan.num_graphs == 1
    assert bool((plan.alpha > 1).all() and (plan.beta > 1).all())
    assert model.kl_loss().ndim == 0


def test_decoder_keeps_alpha_beta_above_one_and_finite_for_any_input():
    decoder = BetaDecoder(latent_dim=2, hidden_dim=4, max_log=10.0)
    torch.nn.init.constant_(decoder.ffn[-1].weight, 1.0)
    h = torch.tensor([[1e6, -1e6], [-1e6, 1e6], [0.0, 0.0]])
    alpha, beta = decoder(h, h)
    assert bool((alpha > 1).all() and (beta > 1).all())
    assert bool(torch.isfinite(alpha).all() and torch.isfinite(beta).all())
    assert float(alpha.detach().max()) <= 1 + torch.e**10 + 1e-3


def test_decoder_is_alpha_one_plus_exp_a():
    decoder = BetaDecoder(latent_dim=1, hidden_dim=1, max_log=10.0)
    with torch.no_grad():
        decoder.ffn[0].weight.fill_(1.0)
        decoder.ffn[0].bias.fill_(0.0)
        decoder.ffn[2].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        decoder.ffn[2].bias.copy_(torch.tensor([0.5, 0.25]))
    alpha, beta = decoder(torch.tensor([[1.0]]), torch.tensor([[1.0]]))  # ELU(2) = 2
    a, b = torch.tensor(2.5), torch.tensor(-1.75)
    squash = 10 * torch.tanh(torch.stack([a, b]) / 10)
    torch.testing.assert_close(alpha, (1 + squash[0].exp()).reshape(1))
    torch.testing.assert_close(beta, (1 + squash[1].exp()).reshape(1))


def test_inference_uses_the_mean_and_is_deterministic(model):
    data = activate(toy_subgraph(), unit(99), toy_config())
    model.eval()
    first, second = model(data), model(data)
    torch.testing.assert_close(first.alpha, second.alpha)
    torch.testing.assert_close(first.mean(), first.alpha / (first.alpha + first.beta))
    model.train()  # reparameterised latents: H = μ + σ·ε differs from μ
    torch.manual_seed(1)
    sampled = model(data)
    assert not torch.allclose(sampled.alpha, first.alpha)


def test_a_batch_plans_each_graph_as_alone(model):
    model.eval()
    config = toy_config()
    one = activate(toy_subgraph(), unit(98), config)
    two = activate(toy_subgraph(metrics=("m1", "m2")), unit(99), config)
    batch = model(Batch.from_data_list([one, two]))
    assert batch.graph.tolist() == [0, 0, 0, 1, 1, 1] and batch.num_graphs == 2
    torch.testing.assert_close(batch.alpha[:3], model(one).alpha)
    torch.testing.assert_close(batch.alpha[3:], model(two).alpha)


def test_log_prob_sums_beta_log_densities_per_graph(model):
    config = toy_config()
    data = Batch.from_data_list([activate(toy_subgraph(), unit(s), config) for s in (98, 99)])
    plan = model(data)
    torch.manual_seed(0)
    w = plan.sample(5)
    assert w.shape == (5, 6) and bool(((w > 0) & (w < 1)).all())
    log_prob = plan.log_prob(w)
    per_expert = torch.distributions.Beta(plan.alpha, plan.beta).log_prob(w)
    torch.testing.assert_close(
        log_prob, torch.stack([per_expert[:, :3].sum(1), per_expert[:, 3:].sum(1)], dim=1)
    )


def test_experts_without_reference_prompts(model):
    sub = toy_subgraph()
    sub.ref_ids, sub.ref_x = [], torch.zeros(0, 8)
    sub.edge_index = torch.zeros(2, 0, dtype=torch.long)
    sub.edge_attr, sub.edge_mask = torch.zeros(0, 2), torch.zeros(0, 2, dtype=torch.bool)
    plan = model(activate(sub, unit(99), toy_config()))
    assert plan.alpha.shape == (3,) and bool(torch.isfinite(plan.mean()).all())
