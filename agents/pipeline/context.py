"""Building the pipeline's components from the settings (once per process)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agents.pipeline.pipeline import PipelineContext

if TYPE_CHECKING:
    from graph.universal import UniversalGraph
    from planner.loading import PlannerKind
    from planner.planners import Planner
    from tools.generation.generator import Generator
    from tools.settings import Settings


def load_planner(
    settings: Settings, graph: UniversalGraph, kind: PlannerKind = "learned"
) -> tuple[Planner, list[str]]:
    """The planner to use and notes for the recipe: with no trained planner, ``learned``
    falls back to equal weights and says so."""
    from planner.loading import checkpoint_path, make_planner
    from planner.planners import EqualPlanner

    path = checkpoint_path(settings)
    if kind == "learned" and not path.is_file():
        return EqualPlanner(), [
            f"no trained planner at {path}: equal merge weights (train one with "
            "`diffgraph train-planner`)"
        ]
    return make_planner(kind, settings, graph), []


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
    chosen, notes = load_planner(settings, graph, planner)
    return PipelineContext(
        settings=settings,
        graph=graph,
        selection=make_context(selection_settings, graph),
        planner=chosen,
        generator=generator,
        notes=notes,
    )
