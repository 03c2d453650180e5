"""REINFORCE (Eq. 4): the loss, the baselines, and a step moving probability to rewards."""

from __future__ import annotations

import pytest
import torch

from planner.activation import activate
from planner.model import MergingPlanner
from planner.reinforce import RunningMean, leave_one_out, reinforce_loss
from tests.planner.helpers import toy_config, toy_subgraph, unit


def test_loss_is_minus_advantage_times_log_prob():
    log_prob = torch.tensor([-1.0, -2.0, 0.5], requires_grad=True)
    loss = reinforce_loss(log_prob, torch.tensor([1.0, 0.0, 3.0]), 1.0)
    assert float(loss.detach()) == pytest.approx(-(0 * -1 + -1 * -2 + 2 * 0.5) / 3)
    loss.backward()
    torch.testing.assert_close(log_prob.grad, torch.tensor([0.0, 1 / 3, -2 / 3]))


def test_gradient_on_beta_parameters_is_the_score_function():
    alpha = torch.tensor(2.0, requires_grad=True)
    beta = torch.tensor(3.0, requires_grad=True)
    w, u, b = torch.tensor(0.7), torch.tensor(1.5), 0.5
    reinforce_loss(torch.distributions.Beta(alpha, beta).log_prob(w), u, b).backward()
    digamma = torch.special.digamma
    d_alpha = torch.log(w) - digamma(alpha) + digamma(alpha + beta)
    d_beta = torch.log(1 - w) - digamma(beta) + digamma(alpha + beta)
    torch.testing.assert_close(alpha.grad, -(u - b) * d_alpha.detach())
    torch.testing.assert_close(beta.grad, -(u - b) * d_beta.detach())
    # a rewarded w above the mean 0.4 raises alpha (gradient descent: -grad > 0)
    assert float(alpha.grad) < 0 < float(beta.grad)


def test_leave_one_out_baseline():
    rewards = torch.tensor([[1.0, 10.0], [2.0, 20.0], [6.0, 30.0]])
    expected = torch.tensor([[4.0, 25.0], [3.5, 20.0], [1.5, 15.0]])
    torch.testing.assert_close(leave_one_out(rewards), expected)
    with pytest.raises(ValueError, match="at least 2"):
        leave_one_out(rewards[:1])


def test_running_mean_baseline():
    baseline = RunningMean(momentum=0.9)
    first = torch.tensor([[1.0, 3.0]])
    assert baseline.current(first) == 2.0  # the first step centres on itself
    baseline.update(first)
    assert baseline.current(torch.tensor([[10.0]])) == 2.0
    baseline.update(torch.tensor([[12.0]]))
    assert baseline.value == pytest.approx(0.9 * 2 + 0.1 * 12)


def test_a_step_moves_probability_toward_the_rewarded_sample():
    torch.manual_seed(0)
    model = MergingPlanner(toy_config())
    data = activate(toy_subgraph(), unit(99), toy_config())
    model.eval()  # fixed latents: the policy is P(w | μ)
    plan = model(data)
    w = plan.sample(2)  # two merges of the same prompt
    rewards = torch.tensor([[1.0], [0.0]])  # the first one was better
    log_prob = plan.log_prob(w)[:, 0]
    gap_before = float((log_prob[0] - log_prob[1]).detach())
    # loss = -mean((u - b) log P) = -(log P(w1) - log P(w2)) / 2 with leave-one-out b
    loss = reinforce_loss(plan.log_prob(w), rewards, leave_one_out(rewards))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    optimizer.zero_grad()
    loss.backward()
    squared = sum(float((p.grad**2).sum()) for p in model.parameters() if p.grad is not None)
    optimizer.step()
    with torch.no_grad():
        after = model(data).log_prob(w)[:, 0]
    gain = float(after[0] - after[1]) - gap_before
    assert gain > 0
    # first order: the gap grows by lr · |∇gap|² / 2 = lr · 2|∇loss|²
    assert gain == pytest.approx(1e-4 * 2 * squared, rel=0.05)
