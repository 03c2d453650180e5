"""Planners of the benchmark's learned rows: the full planner and its ablation variants.

Each variant is a set of :class:`planner.config.PlannerConfig` switches (paper §4). Its
planner comes from a checkpoint (given per variant; the full planner defaults to
``planner.checkpoint``) or, when asked, from a short REINFORCE run on the synthetic reward
over this graph's experts. That reward is a hidden random function of the prompt and the
expert's description (``planner.envs.synthetic``), not image quality: such planners are
demo planners, and every row they make says so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from evals.errors import BenchmarkError

if TYPE_CHECKING:
    from graph.records import Expert
    from graph.universal import UniversalGraph
    from planner.planners import Planner
    from tools.settings import Settings

log = logging.getLogger(__name__)

# variant name → the PlannerConfig switches that make it
VARIANTS: dict[str, dict[str, str]] = {
    "full": {"expert_features": "description", "edge_features": "calibration"},
    "no-registration": {"expert_features": "zero", "edge_features": "calibration"},
    "no-calibration": {"expert_features": "description", "edge_features": "none"},
    "learnable-experts": {"expert_features": "learnable", "edge_features": "calibration"},
    "learnable-edges": {"expert_features": "description", "edge_features": "learnable"},
    "parameters": {"expert_features": "parameters", "edge_features": "calibration"},
}


@dataclass
class VariantPlanner:
    """A loaded planner and where it came from (said in the benchmark's output)."""

    planner: Planner
    source: str
    demo: bool


def load_variant(
    variant: str,
    settings: Settings,
    graph: UniversalGraph,
    pool: Sequence[Expert],
    checkpoint: Path | None,
    train_steps: int | None,
    train_prompts: Sequence[str],
    out_dir: Path,
) -> VariantPlanner:
    """The planner of ``variant``: from ``checkpoint`` (the full planner: default
    ``planner.checkpoint``), else trained ``train_steps`` steps on the synthetic reward over
    ``pool``; raises :class:`BenchmarkError` when neither is possible."""
    from planner.checkpoint import read_checkpoint
    from planner.loading import checkpoint_path, load_learned

    if variant not in VARIANTS:
        raise BenchmarkError(f"unknown planner variant {variant!r}: expected {list(VARIANTS)}")
    if checkpoint is None and variant == "full" and checkpoint_path(settings).is_file():
        checkpoint = checkpoint_path(settings)
    if checkpoint is None:
        if not train_steps:
            default = " (or set planner.checkpoint)" if variant == "full" else ""
            raise BenchmarkError(
                f"no planner checkpoint for the {variant!r} variant: give one with "
                f"--planner-checkpoint {variant}=PATH{default}, or --train-steps N to train "
                "one briefly on the synthetic reward (demo)"
            )
        checkpoint = out_dir / f"{variant}.safetensors"
        _train(variant, settings, graph, pool, train_steps, train_prompts, checkpoint)
        source = f"trained {train_steps} steps here on the synthetic reward: {checkpoint}"
    else:
        source = f"checkpoint {checkpoint}"
    state = read_checkpoint(checkpoint).state
    source += f" ({state.step} REINFORCE steps, {state.env} reward, {state.prompts} prompts)"
    planner = load_learned(settings, graph, checkpoint)
    config = planner.model.config
    found = {"expert_features": config.expert_features, "edge_features": config.edge_features}
    if found != VARIANTS[variant]:
        raise BenchmarkError(
            f"planner checkpoint {checkpoint} has {found}, but the {variant!r} variant needs "
            f"{VARIANTS[variant]}: give the checkpoint trained for that variant"
        )
    planner.name = variant
    if planner.synthetic:
        source += " (synthetic reward: demo, not image quality)"
    elif planner.demo:
        source += " (trained on demo backends)"
    return VariantPlanner(planner, source, planner.demo)


def _train(
    variant: str,
    settings: Settings,
    graph: UniversalGraph,
    pool: Sequence[Expert],
    steps: int,
    prompts: Sequence[str],
    checkpoint: Path,
) -> None:
    """A short REINFORCE run of ``variant`` on the synthetic reward over this graph."""
    from planner.training import train_planner

    if not pool:
        raise BenchmarkError(
            "no active expert with local weights in the graph: nothing to train the planner on"
        )
    run = settings.model_copy(
        update={"planner": settings.planner.model_copy(update={"checkpoint_every": steps})}
    )
    checkpoint.unlink(missing_ok=True)
    log.info("training the %s planner %d steps on the synthetic reward", variant, steps)
    train_planner(
        run,
        graph,
        prompts,
        env="graph",
        steps=steps,
        path=checkpoint,
        experts=[e.id for e in pool],
        **VARIANTS[variant],
    )
