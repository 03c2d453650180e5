"""The synthetic world: hidden usefulness, calibration as measured, the known optimum."""

from __future__ import annotations

import itertools
import math

import torch

from planner.envs.base import TrainPrompt, fixed_selector
from planner.envs.synthetic import (
    METRICS,
    HiddenUsefulness,
    SyntheticEnv,
    SyntheticWorld,
    best_coefficients,
    merged_usefulness,
)
from tests.planner.helpers import unit

KINDS = ["ckpt", "ckpt", "peft", "peft", "peft"]


def test_merged_usefulness_is_the_merge_weighted_mean_per_kind():
    u = torch.tensor([0.9, 0.1, 0.5, 0.2, 0.8])
    w = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0])
    e = math.e
    ckpt = (e * 0.9 + 0.1) / (e + 1)
    lora = (0.5 + 0.2 + e * 0.8) / (2 + e)
    assert float(merged_usefulness(u, w, KINDS)) == float(torch.tensor((ckpt + lora) / 2))
    only_loras = merged_usefulness(u[2:], w[2:], KINDS[2:])
    torch.testing.assert_close(only_loras, torch.tensor(lora, dtype=torch.float32))


def test_best_coefficients_beat_every_corner_and_random_point():
    u = torch.tensor([0.3, 0.35, 0.9, 0.2, 0.85])
    best = best_coefficients(u, KINDS)
    assert best.tolist() == [0.0, 1.0, 1.0, 0.0, 1.0]
    top = float(merged_usefulness(u, best, KINDS))
    corners = [torch.tensor(c) for c in itertools.product([0.0, 1.0], repeat=5)]
    points = [*corners, *torch.rand(200, 5, generator=torch.Generator().manual_seed(0))]
    assert all(float(merged_usefulness(u, p, KINDS)) <= top + 1e-6 for p in points)


def test_hidden_usefulness_formula():
    hidden = HiddenUsefulness.random(8, seed=3, sharpness=10.0, center=0.2, quality_weight=0.5)
    experts = torch.stack([unit(1), unit(2)])
    prompt = unit(5)
    quality = torch.tanh(math.sqrt(8) * experts @ hidden.direction)
    expected = torch.sigmoid(10 * (experts @ prompt - 0.2) + 0.5 * quality)
    torch.testing.assert_close(hidden(prompt, experts), expected)


def test_calibration_edges_measure_the_hidden_usefulness():
    refs = torch.stack([unit(10 + i) for i in range(6)])
    experts = torch.stack([unit(1), unit(2), unit(3)])
    world = SyntheticWorld.build(
        ["a", "b", "c"], KINDS[1:4], experts, refs, coverage=1.0, noise=0.0
    )
    sub = world.subgraph(["c", "a"])
    assert sub.metric_names == METRICS and sub.expert_kinds == ["peft", "ckpt"]
    assert sub.edge_index.shape == (2, 12) and bool(sub.edge_mask.all())
    truth = world.usefulness(refs, experts[[2, 0]])  # (refs, experts)
    quality = torch.sigmoid(world.usefulness.quality(experts[[2, 0]]))
    for (e, r), scores in zip(sub.edge_index.T.tolist(), sub.edge_attr, strict=True):
        torch.testing.assert_close(scores, torch.stack([truth[r, e], quality[e]]))


def test_a_new_expert_is_calibrated_without_touching_the_others():
    refs = torch.stack([unit(10 + i) for i in range(6)])
    world = SyntheticWorld.build(
        ["a", "b"], ["ckpt", "peft"], torch.stack([unit(1), unit(2)]), refs
    )
    grown = world.with_experts(["new"], ["peft"], unit(3)[None], seed=7)
    assert grown.expert_ids == ["a", "b", "new"] and world.expert_ids == ["a", "b"]
    before, after = world.subgraph(["a", "b"]), grown.subgraph(["a", "b"])
    torch.testing.assert_close(after.edge_attr, before.edge_attr)
    assert grown.subgraph(["new"]).edge_index.shape[1] > 0


def test_env_selection_rewards_and_optimum():
    refs = torch.stack([unit(10 + i) for i in range(4)])
    ids = [f"e{i}" for i in range(8)]
    kinds = ["ckpt"] * 4 + ["peft"] * 4
    world = SyntheticWorld.build(ids, kinds, torch.stack([unit(i) for i in range(8)]), refs)
    prompt = TrainPrompt("a cat", unit(50))
    chosen = world.select(prompt, k_ckpt=2, k_lora=3)
    assert chosen == world.select(prompt, k_ckpt=2, k_lora=3)  # fixed per prompt text
    assert [world.subgraph(chosen).expert_kinds.count(k) for k in ("ckpt", "peft")] == [2, 3]
    env = SyntheticEnv(world, fixed_selector(["e0", "e5"]))
    assert env.candidates(prompt) == ["e0", "e5"]
    sub = env.subgraph(["e0", "e1", "e4", "e5"])
    samples = torch.rand(3, 4, generator=torch.Generator().manual_seed(0))
    rewards = env.rewards([prompt], [sub], [samples])
    u = world.true_usefulness(prompt.x, sub.expert_ids)
    assert rewards.shape == (3, 1)
    torch.testing.assert_close(rewards[:, 0], merged_usefulness(u, samples, sub.expert_kinds))
    best, value = env.optimum(prompt, sub)
    assert value == float(merged_usefulness(u, best, sub.expert_kinds))
    assert env.demo and env.synthetic
