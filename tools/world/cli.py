"""``diffgraph world build|eval``: rebuild the small trained world and measure it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from graph.console import console

world_app = typer.Typer(
    help="The small trained world (64×64 shapes; not SD 1.5): build it, measure it.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(world_app, name="world")


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bar = Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console,
    )  # fmt: skip
    tasks: dict[str, int] = {}

    def report(task: str, done: int, total: int) -> None:
        if task not in tasks:
            tasks[task] = bar.add_task(task, total=total)
        bar.update(tasks[task], completed=done)

    return bar, report


@world_app.command("build")
def build(
    work: Annotated[Path, typer.Option(help="training copies and snapshots (resumable)")] = Path(
        ".diffgraph/world-build"
    ),
    out: Annotated[
        Path | None, typer.Option(help="where the world goes (default: shipped)")
    ] = None,
    threads: Annotated[int, typer.Option(min=1, help="torch CPU threads")] = 2,
) -> None:
    """Train the whole world from nothing (VAE, base, judge, CLIP, experts); resumable."""
    import torch

    from tools.world.build import WORLD_DIR, WorldBuild

    torch.set_num_threads(threads)
    bar, report = _progress()
    with bar:
        folder = WorldBuild(work, out or WORLD_DIR, progress=report).run()
    console.print(f"world written to {folder} (manifest.json lists every file and hash)")


@world_app.command("eval")
def evaluate(
    world: Annotated[Path | None, typer.Option(help="world folder (default: shipped)")] = None,
    seeds: Annotated[int, typer.Option(min=1, help="seeds per base prompt")] = 8,
    expert_prompts: Annotated[
        int, typer.Option(min=1, help="prompts per expert (asked and unasked), 2 seeds each")
    ] = 24,
    grid: Annotated[Path, typer.Option(help="picture grid PNG")] = Path("out/world/grid.png"),
    json_out: Annotated[Path | None, typer.Option("--json", help="write figures here")] = None,
) -> None:
    """Measure the quality bars with the world's judge; write figures and a picture grid."""
    from tools.world.build import WORLD_DIR
    from tools.world.evaluate import evaluate_world, picture_grid
    from tools.world.report import figures_markdown

    folder = world or WORLD_DIR
    bar, report = _progress()
    with bar:
        figures = evaluate_world(
            folder, seeds=seeds, expert_prompts=expert_prompts, progress=report
        )
    path = json_out or folder / "figures.json"
    path.write_text(json.dumps(figures, indent=1))
    console.print(figures_markdown(figures), soft_wrap=True, highlight=False)
    console.print(f"figures: {path}; picture grid: {picture_grid(folder, grid)}")
