"""``diffgraph train-autolora encoder|fusion``: train the AutoLoRA baseline's models."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer

from graph.console import console, err_console, print_json, print_table

JsonFlag = Annotated[bool, typer.Option("--json", help="machine-readable output")]
StepsOption = Annotated[int | None, typer.Option(min=1, help="training steps (default: settings)")]
OutOption = Annotated[
    Path | None, typer.Option("--out", help="checkpoint file (default: under data_dir/autolora)")
]

train_app = typer.Typer(
    help="Train the AutoLoRA baseline: weight-encoder retriever and fusion gates.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train-autolora")


@train_app.command("encoder")
def encoder_command(
    ctx: typer.Context,
    steps: StepsOption = None,
    out: OutOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Align LoRA weight embeddings with the captions of the graph's LoRAs (InfoNCE)."""
    from graph.universal import UniversalGraph
    from tools.autolora.train import train_encoder_on_graph

    settings = ctx.obj
    _check_out(out)
    with UniversalGraph(settings.graph) as graph, _progress("encoder", as_json) as on_step:
        report = train_encoder_on_graph(settings, graph, steps=steps, out=out, on_step=on_step)
    _show(report, as_json)


@train_app.command("fusion")
def fusion_command(
    ctx: typer.Context,
    steps: StepsOption = None,
    pairs_dir: Annotated[
        Path | None,
        typer.Option(
            "--pairs-dir",
            help="folder with one sub-folder per expert id of images + .txt captions; "
            "default: generate pairs with each LoRA merged",
        ),
    ] = None,
    base_model: Annotated[
        Path | None, typer.Option("--base-model", help="SD 1.5 base (default: base_model)")
    ] = None,
    out: OutOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Train the fusion gates with a target and an interference LoRA active each step."""
    from graph.universal import UniversalGraph
    from tools.autolora.train import train_fusion_on_graph
    from tools.generation.generator import Generator

    settings = ctx.obj
    _check_out(out)
    generator = Generator.from_settings(settings, base_model)
    with UniversalGraph(settings.graph) as graph, _progress("fusion", as_json) as on_step:
        report = train_fusion_on_graph(
            settings, graph, generator, steps=steps, pairs_dir=pairs_dir, out=out, on_step=on_step
        )
    _show(report, as_json)


def _check_out(out: Path | None) -> None:
    from graph.outputs import check_output_file

    if out is not None:
        check_output_file(out, "--out")


@contextlib.contextmanager
def _progress(kind: str, quiet: bool) -> Iterator[Callable[[int, float], None] | None]:
    """A progress line on stderr; what it yields is the training step callback."""
    if quiet:
        yield None
        return
    from rich.progress import Progress

    with Progress(console=err_console, transient=True) as progress:
        task = progress.add_task(f"training the AutoLoRA {kind}", total=None)

        def on_step(step: int, loss: float) -> None:
            progress.update(task, completed=step + 1, description=f"{kind} loss {loss:.4f}")

        yield on_step


def _show(report, as_json: bool) -> None:
    if as_json:
        print_json(report)
        return
    rows = [
        ("checkpoint", report.checkpoint),
        ("steps", report.steps),
        ("loss", f"{report.first_loss:.4f} -> {report.last_loss:.4f}"),
        ("LoRAs", len(report.loras)),
        ("data", report.data),
    ]
    if report.caption_top1 is not None:
        rows.append(("caption -> LoRA top-1", f"{report.caption_top1:.2f}"))
    print_table(f"AutoLoRA {report.kind}" + (" · DEMO" if report.demo else ""), ["", "value"], rows)
    for expert_id, reason in report.skipped.items():
        console.print(f"[yellow]left out[/] {expert_id}: {reason}", highlight=False)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
