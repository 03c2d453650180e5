"""Building planners, selectors and reward environments from the application settings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from planner.envs.base import Selector, TrainPrompt, fixed_selector
from planner.errors import PlannerError

if TYPE_CHECKING:
    from graph.embedding import Embedder
    from graph.universal import UniversalGraph
    from planner.envs.real import RealEnv
    from planner.planners import Planner, VGAEPlanner
    from tools.settings import Settings

PlannerKind = Literal["learned", "equal", "random", "llm"]


def checkpoint_path(settings: Settings) -> Path:
    """Where the trained planner lives (``planner.checkpoint`` or the data directory)."""
    return settings.planner.checkpoint or settings.data_dir / "planner" / "planner.safetensors"


def embed_prompts(embedder: Embedder, texts: Sequence[str]) -> list[TrainPrompt]:
    vectors = embedder.embed(list(texts))
    return [TrainPrompt(t, torch.from_numpy(v)) for t, v in zip(texts, vectors, strict=True)]


def load_learned(settings: Settings, graph: UniversalGraph, path: Path) -> VGAEPlanner:
    """The trained planner at ``path``; a parameter-based one reads the experts' weights."""
    from planner.checkpoint import read_checkpoint
    from planner.param_features import ParameterFeaturizer
    from planner.planners import VGAEPlanner

    saved = read_checkpoint(path)
    featurizer = None
    if saved.config.expert_features == "parameters":
        featurizer = ParameterFeaturizer(
            lambda ids: graph.experts(ids=list(ids)),
            saved.config.feature_dim,
            allow_pickle=settings.allow_pickle,
        )
    return VGAEPlanner.from_saved(saved, featurizer)


def make_planner(
    kind: PlannerKind, settings: Settings, graph: UniversalGraph, path: Path | None = None
) -> Planner:
    """The planner of ``kind`` (``learned`` reads the checkpoint, default from settings)."""
    from planner.planners import EqualPlanner, RandomPlanner

    if kind == "equal":
        return EqualPlanner()
    if kind == "random":
        return RandomPlanner(settings.planner.seed)
    if kind == "llm":
        from graph.universal import node_text
        from planner.llm_planner import LLMPlanner
        from tools.llm import make_chat_model

        return LLMPlanner(
            make_chat_model(settings.llm),
            lambda ids: [node_text(e) for e in graph.experts(ids=list(ids))],
            settings.llm,
        )
    return load_learned(settings, graph, path or checkpoint_path(settings))


def selection_selector(settings: Settings, graph: UniversalGraph) -> Selector:
    """The Expert Selection Agent as a selector (one traced run per prompt)."""
    from agents.selection import make_context, select

    context = make_context(settings, graph)

    def choose(prompt: TrainPrompt) -> list[str]:
        ids = select(prompt.text, context).expert_ids
        if not ids:
            raise PlannerError(
                f"the selection agent found no experts for {prompt.text!r}: add experts to "
                "the graph, or give --experts"
            )
        return ids

    return choose


def real_env(
    settings: Settings, graph: UniversalGraph, experts: Sequence[str] | None = None
) -> RealEnv:
    """Generate with ``settings.base_model`` and score with ``settings.scorers``."""
    from planner.envs.real import RealEnv
    from tools.generation.generator import Generator
    from tools.generation.loading import resolve_device
    from tools.scorers.load import load_scorers
    from tools.scorers.reward import combine

    generator = Generator.from_settings(settings)
    scorers = load_scorers(
        settings.scorers,
        device=resolve_device(settings.device),
        allow_pickle=settings.allow_pickle,
    )
    gen, scoring = settings.generation, settings.scorers
    return RealEnv(
        graph,
        generator,
        scorers,
        lambda scores: combine(scores, scoring.reward_weights, scoring.normalization),
        fixed_selector(experts) if experts else selection_selector(settings, graph),
        {
            "steps": gen.steps,
            "guidance": gen.guidance,
            "negative_prompt": gen.negative_prompt,
            "width": gen.size,
            "height": gen.size,
        },
    )
