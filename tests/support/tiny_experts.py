"""Demo experts with real tiny weight files, for tests that merge and generate."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from graph.records import BaseFamily, Expert, ExpertKind, WeightFile

if TYPE_CHECKING:
    from agents.pipeline.pipeline import PipelineContext
    from graph.universal import UniversalGraph
    from tools.settings import Settings

# (expert id, "ckpt" | "peft", description, trigger words)
ExpertSpec = tuple[str, str, str, Sequence[str]]


def tiny_experts(pipe, folder: Path, specs: Sequence[ExpertSpec]) -> list[Expert]:
    """One SD 1.5 expert per spec, its weights written under ``folder`` (seeded by position)."""
    from tools.tiny import make_tiny_checkpoint, make_tiny_lora

    experts = []
    for seed, (expert_id, kind, description, triggers) in enumerate(specs):
        path = Path(folder) / f"{expert_id}.safetensors"
        if kind == "ckpt":
            make_tiny_checkpoint(pipe, path, seed=seed)
        else:
            make_tiny_lora(pipe, path, seed=seed, trigger_words=list(triggers))
        experts.append(
            Expert(
                id=expert_id,
                kind=ExpertKind(kind),
                base=BaseFamily.SD15,
                name=expert_id,
                description=description,
                trigger_words=list(triggers),
                file=WeightFile(path=str(path)),
                demo=True,
            )
        )
    return experts


def tiny_pipeline(settings: Settings, graph: UniversalGraph, folder: Path) -> PipelineContext:
    """The pipeline over ``graph``: no-LLM selection, the equal planner and the tiny
    generator loaded from the diffusers ``folder``."""
    from agents.pipeline.pipeline import PipelineContext
    from agents.selection.graph import make_context
    from planner.planners import EqualPlanner
    from tools.generation.generator import Generator

    return PipelineContext(
        settings=settings,
        graph=graph,
        selection=make_context(settings, graph),
        planner=EqualPlanner(),
        generator=Generator.from_path(folder),
    )
