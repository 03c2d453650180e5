"""Building the pipeline's components from the settings (once per process)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from agents.pipeline.pipeline import PipelineContext

if TYPE_CHECKING:
    from graph.universal import UniversalGraph
    from planner.planners import Planner
    from tools.generation.generator import Generator
    from tools.settings import Settings

PlannerKind = Literal["learned", "equal", "random"]


def planner_checkpoint(settings: Settings):
    """Where the trained planner lives (``planner.checkpoint`` or the data directory)."""
    return settings.planner.checkpoint or settings.data_dir / "planner" / "planner.safetensors"


def load_planner(settings: Settings, kind: PlannerKind = "learned") -> tuple[Planner, list[str]]:
    """The planner to use and notes for the recipe (e.g. that no trained one exists)."""
    from planner.planners import EqualPlanner, RandomPlanner, VGAEPlanner

    if kind == "equal":
        return EqualPlanner(), []
    if kind == "random":
        return RandomPlanner(), []
    path = planner_checkpoint(settings)
    if not path.is_file():
        return EqualPlanner(), [
            f"no trained planner at {path}: equal merge weights (train one with "
            "`diffgraph train-planner`)"
        ]
    from planner.checkpoint import read_checkpoint

    checkpoint = read_checkpoint(path)
    planner = VGAEPlanner(checkpoint.build_model(), synthetic=checkpoint.state.synthetic)
    return planner, []


def build_context(
    settings: Settings,
    planner: PlannerKind = "learned",
    graph: UniversalGraph | None = None,
    generator: Generator | None = None,
) -> PipelineContext:
    """Graph, selection agent, planner and loaded generator for ``settings``."""
    from agents.selection.graph import make_context
    from graph.universal import UniversalGraph
    from tools.generation.generator import Generator

    graph = graph or UniversalGraph(settings.graph)
    generator = generator or Generator.from_settings(settings)
    selection_settings = settings.model_copy(
        update={"selection": settings.selection.model_copy(update={"family": generator.family})}
    )
    chosen, notes = load_planner(settings, planner)
    return PipelineContext(
        settings=settings,
        graph=graph,
        selection=make_context(selection_settings, graph),
        planner=chosen,
        generator=generator,
        notes=notes,
    )
