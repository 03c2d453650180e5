"""Training on the synthetic world: it learns, generalises, checkpoints and resumes."""

from __future__ import annotations

import pytest
import torch

from planner.checkpoint import read_checkpoint
from planner.envs.synthetic import SyntheticEnv
from planner.errors import CheckpointError
from planner.evaluation import evaluate
from planner.planners import EqualPlanner, PlanRequest, RandomPlanner, VGAEPlanner
from planner.trainer import Trainer, curve_paths
from tests.planner.conftest import HELD_OUT, TRAIN_STEPS
from tools.settings import PlannerSettings


def spearman(a, b) -> float:
    """Rank correlation (no ties in continuous values)."""
    ranks = [torch.tensor(v).argsort().argsort().double() for v in (a, b)]
    return float(torch.corrcoef(torch.stack(ranks))[0, 1])


def test_trained_planner_beats_equal_and_random_on_held_out_prompts(trained, world, world_data):
    env = SyntheticEnv(world)
    learned = evaluate(VGAEPlanner(trained.model, synthetic=True), env, world_data.val)
    equal = evaluate(EqualPlanner(), env, world_data.val)
    random = evaluate(RandomPlanner(0), env, world_data.val)
    assert equal.gain == 0.0
    assert learned.gain > 0.4  # of the gap from equal weights to the known optimum
    assert abs(random.gain) < 0.15
    margin = learned.reward - max(equal.reward, random.reward)
    assert margin > 0.3 * (learned.optimum - learned.equal)


def test_a_new_expert_gets_sensible_coefficients_without_training(trained, world, world_data):
    """The paper's 2023 → 2025 setting: an expert registered and calibrated after training."""
    i = world_data.expert_ids.index(HELD_OUT)
    grown = world.with_experts([HELD_OUT], [world_data.expert_kinds[i]], world_data.expert_x[[i]])
    planner = VGAEPlanner(trained.model, synthetic=True)
    env = SyntheticEnv(grown)

    def with_new(prompt):
        return [*world.select(prompt), HELD_OUT]

    coefficients, usefulness = [], []
    for prompt in world_data.val:
        ids = with_new(prompt)
        plan = planner.plan(PlanRequest(prompt.text, prompt.x, env.subgraph(ids)))
        coefficients.append(plan.experts[-1].coefficient)
        usefulness.append(float(grown.true_usefulness(prompt.x, [HELD_OUT])[0]))
    assert spearman(coefficients, usefulness) > 0.8
    assert evaluate(planner, env, world_data.val, with_new).gain > 0.4


def test_checkpoint_restores_the_same_plans_and_records_the_run(trained, world_data):
    saved = read_checkpoint(trained.checkpoint)
    assert saved.state.step == TRAIN_STEPS and saved.state.env == "synthetic"
    assert saved.state.synthetic and saved.state.demo
    assert saved.config.metric_names == ["synthetic_quality", "synthetic_aesthetic"]
    assert saved.state.settings["lr"] == PlannerSettings().lr
    restored = VGAEPlanner.from_checkpoint(trained.checkpoint)
    prompt = world_data.val[0]
    request = PlanRequest(
        prompt.text, prompt.x, trained.env.subgraph(trained.env.candidates(prompt))
    )
    original = VGAEPlanner(trained.model, synthetic=True).plan(request)
    again = restored.plan(request)
    assert again.experts == original.experts
    assert again.synthetic and again.demo and "synthetic" in again.notes[0]
    csv_path, png_path = curve_paths(trained.checkpoint)
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "step,reward,baseline,loss,kl,grad_norm" and len(lines) == TRAIN_STEPS + 1
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resumed_training_continues_exactly(world, world_data, tmp_path):
    settings = PlannerSettings(batch_size=4, checkpoint_every=2, seed=3)
    prompts = world_data.train[:10]
    straight = Trainer.start(SyntheticEnv(world), prompts, settings, tmp_path / "a.safetensors")
    straight.run(4)
    first = Trainer.start(SyntheticEnv(world), prompts, settings, tmp_path / "b.safetensors")
    first.run(2)
    other = settings.model_copy(update={"batch_size": 2, "lr": 0.5, "seed": 9})
    resumed = Trainer.resume(SyntheticEnv(world), prompts, other, tmp_path / "b.safetensors")
    assert resumed.state.step == 2
    assert (resumed.settings.batch_size, resumed.settings.seed) == (4, 3)  # the run's own
    resumed.run(4)
    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)
    assert [r["reward"] for r in resumed.rows] == [r["reward"] for r in straight.rows]


def test_checkpoint_errors_say_what_to_do(trained, world_data, tmp_path):
    from planner.envs.real import RealEnv

    with pytest.raises(CheckpointError, match="train-planner"):
        read_checkpoint(tmp_path / "missing.safetensors")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        read_checkpoint(broken)
    other = type("Env", (), {"name": "real"})()
    with pytest.raises(CheckpointError, match="'synthetic' environment, not 'real'"):
        Trainer.resume(other, world_data.train, PlannerSettings(), trained.checkpoint)
    assert RealEnv.name == "real"


def test_planning_against_a_graph_with_other_metrics_is_an_error(trained, world_data):
    planner = VGAEPlanner.from_checkpoint(trained.checkpoint)
    prompt = world_data.val[0]
    subgraph = trained.env.subgraph(trained.env.candidates(prompt))
    subgraph.metric_names = ["clip_score", "aesthetic"]
    with pytest.raises(CheckpointError, match="edge features of dim 5"):
        planner.plan(PlanRequest(prompt.text, prompt.x, subgraph))
