"""One training run from the application settings (what ``diffgraph train-planner`` does)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from planner.checkpoint import TrainState
from planner.config import EdgeFeatures, ExpertFeatures, PlannerConfig
from planner.envs.base import RewardEnv, TrainPrompt, fixed_selector
from planner.errors import PlannerError
from planner.loading import checkpoint_path, embed_prompts, real_env
from planner.trainer import StepCallback, Trainer

if TYPE_CHECKING:
    from graph.universal import UniversalGraph
    from tools.settings import Settings

EnvKind = Literal["real", "synthetic", "graph"]


def train_planner(
    settings: Settings,
    graph: UniversalGraph,
    prompts: Sequence[str],
    *,
    env: EnvKind = "synthetic",
    steps: int | None = None,
    path: Path | None = None,
    refs: int = 40,
    resume: bool = False,
    experts: Sequence[str] | None = None,
    expert_features: ExpertFeatures = "description",
    edge_features: EdgeFeatures = "calibration",
    on_step: StepCallback | None = None,
) -> TrainState:
    """Train (or, with ``resume``, continue) the planner at ``path`` up to ``steps`` steps.

    ``synthetic``: the bundled demo experts over the first ``refs`` prompts as reference
    prompts, trained on the rest. ``graph``: the synthetic reward (a hidden function of
    prompt and expert features) over this graph's own experts and calibration edges, each
    prompt planning over a random mix of ``experts`` (default: the active ones). ``real``:
    generate with ``settings.base_model`` and score with ``settings.scorers`` over the
    graph's experts (``experts``, else the selection agent's choice per prompt).
    """
    path = path or checkpoint_path(settings)
    environment, train = reward_env(env, settings, graph, prompts, refs, experts)
    featurizer = None
    if expert_features == "parameters":
        from planner.param_features import ParameterFeaturizer

        featurizer = ParameterFeaturizer(
            lambda ids: graph.experts(ids=list(ids)), allow_pickle=settings.allow_pickle
        )
    if resume and path.is_file():
        trainer = Trainer.resume(environment, train, settings.planner, path, featurizer)
    else:
        config = PlannerConfig(expert_features=expert_features, edge_features=edge_features)
        trainer = Trainer.start(environment, train, settings.planner, path, config, featurizer)
    return trainer.run(steps or settings.planner.steps, on_step)


def reward_env(
    env: EnvKind,
    settings: Settings,
    graph: UniversalGraph,
    prompts: Sequence[str],
    refs: int,
    experts: Sequence[str] | None = None,
) -> tuple[RewardEnv, list[TrainPrompt]]:
    """The reward environment of ``env`` and its embedded training prompts."""
    if env == "real":
        return real_env(settings, graph, experts), embed_prompts(graph.embedder, prompts)
    from planner.envs.synthetic import SyntheticEnv, SyntheticWorld

    if env == "graph":
        return graph_env(settings, graph, experts), embed_prompts(graph.embedder, prompts)

    if len(prompts) <= refs:
        raise PlannerError(
            f"{len(prompts)} prompts: the synthetic world takes the first {refs} as reference "
            "prompts and trains on the rest; give more prompts or a smaller --refs"
        )
    world = SyntheticWorld.demo(graph.embedder, prompts[:refs], seed=settings.planner.seed)
    unknown = sorted(set(experts or []) - set(world.expert_ids))
    if unknown:
        raise PlannerError(
            f"--experts {unknown} are not in the synthetic world: choose from "
            f"{', '.join(world.expert_ids)}"
        )
    selector = fixed_selector(experts) if experts else None
    return SyntheticEnv(world, selector), embed_prompts(graph.embedder, prompts[refs:])


def graph_env(settings: Settings, graph: UniversalGraph, pool: Sequence[str] | None = None):
    """The synthetic reward over this graph's experts: planners trained on it fit the
    graph's own calibration metrics (a demo reward: it is not image quality)."""
    from graph.records import ExpertStatus
    from planner.envs.synthetic import HiddenUsefulness, SyntheticEnv, SyntheticWorld

    arrays = graph.store.arrays()
    if pool is None:
        pool = [e.id for e in graph.store.experts(status=ExpertStatus.ACTIVE)]
    if not pool:
        raise PlannerError("the graph has no active experts: nothing to train the planner on")
    usefulness = HiddenUsefulness.random(arrays.expert_x.shape[1], settings.planner.seed)
    world = SyntheticWorld(arrays, usefulness)
    return SyntheticEnv(world, selector=lambda prompt: world.select(prompt, pool=pool))
