"""``diffgraph calibrate`` and ``diffgraph ref-prompts ...``: node calibration from the shell."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from graph.console import console, err_console, print_json, print_table
from tools.seed_option import seed_option

JsonFlag = Annotated[bool, typer.Option("--json", help="machine-readable output")]
ref_app = typer.Typer(help="Reference prompts used to calibrate experts.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_command)
    app.add_typer(ref_app, name="ref-prompts")


def calibrate_command(
    ctx: typer.Context,
    expert_ids: Annotated[list[str] | None, typer.Argument(help="experts to calibrate")] = None,
    all_experts: Annotated[
        bool, typer.Option("--all", help="every active expert of the base model's family")
    ] = False,
    prompts: Annotated[
        Path | None,
        typer.Option("--prompts", help="reference prompts file (added to the graph first)"),
    ] = None,
    base_model: Annotated[
        Path | None, typer.Option("--base-model", help="default: settings base_model")
    ] = None,
    executor: Annotated[
        Literal["local", "ray"] | None, typer.Option(help="default: settings calibration.executor")
    ] = None,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Ray actors")] = None,
    images_per_prompt: Annotated[int | None, typer.Option("--images", "-n", min=1)] = None,
    steps: Annotated[int | None, typer.Option(min=1)] = None,
    seed: Annotated[int | None, seed_option()] = None,
    size: Annotated[int | None, typer.Option(min=16, max=4096, help="image side")] = None,
    metrics: Annotated[
        list[str] | None, typer.Option("--metric", help="scorer (repeatable); default: settings")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Generate and score images of each expert for every reference prompt (resumable)."""
    from graph.prompts import read_prompts
    from graph.records import ExpertStatus
    from graph.universal import UniversalGraph
    from tools.calibration.errors import CalibrationError
    from tools.calibration.executor import make_executor
    from tools.calibration.tasks import SamplingSpec
    from tools.calibration.worker import WorkerSpec
    from tools.generation.loading import detect_family

    settings = ctx.obj
    c = settings.calibration
    updates = {
        "images_per_prompt": images_per_prompt,
        "steps": steps,
        "seed": seed,
        "size": size,
    }
    sampling = SamplingSpec.from_settings(settings).model_copy(
        update={k: v for k, v in updates.items() if v is not None}
    )
    if metrics:
        settings = settings.model_copy(
            update={"scorers": settings.scorers.model_copy(update={"metrics": metrics})}
        )
    spec = WorkerSpec.from_settings(settings, sampling, base_model)
    base = detect_family(spec.base_model, spec.allow_pickle)
    texts = read_prompts(prompts) if prompts else None
    with UniversalGraph(settings.graph) as graph:
        if all_experts:
            experts = graph.experts(base=base, status=ExpertStatus.ACTIVE)
        elif expert_ids:
            experts = [graph.expert(i) for i in expert_ids]
        else:
            raise CalibrationError("name the experts to calibrate, or pass --all")
        runner = make_executor(
            executor or c.executor, spec, workers or c.ray_workers, ray_address or c.ray_address
        )
        try:
            report = _run(graph, experts, runner, base, texts, show_progress=not as_json)
        finally:
            runner.close()
    data = report.as_dict()
    if as_json:
        print_json(data)
        if report.exit_code:
            raise typer.Exit(report.exit_code)
        return
    print_table(
        "calibration",
        ["expert", "prompts scored", "already scored", "error"],
        [
            (e, report.calibrated.get(e, 0), report.skipped.get(e, 0), report.failures.get(e, ""))
            for e in [x.id for x in experts]
        ],
    )
    console.print(f"{report.images} images in {report.seconds:.1f} s")
    if report.demo:
        console.print("[yellow]demo: tiny random weights made or scored these images[/]")
    if report.unusable:
        err_console.print(
            "[red]error:[/] some experts cannot be calibrated on this base model (see the "
            "error column): fix or deprecate them"
        )
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _run(graph, experts, runner, base, texts, show_progress: bool):
    from rich.progress import Progress

    from tools.calibration.calibrate import calibrate

    if not show_progress:
        return calibrate(graph, experts, runner, base, texts)
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("calibrating experts", total=None)

        def advance(result, done: int, total: int) -> None:
            bar.update(
                task, completed=done, total=total, description=f"calibrated {result.expert_id}"
            )

        return calibrate(graph, experts, runner, base, texts, progress=advance)


@ref_app.command("pick")
def pick(
    ctx: typer.Context,
    source: Annotated[Path, typer.Option("--from", help="prompt file (.txt or .jsonl)")],
    n: Annotated[int, typer.Option("--n", min=1, help="how many prompts to pick")],
    seed: Annotated[int, seed_option("k-means seed", maximum=2**32 - 1)] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="read at most this many")] = None,
    add: Annotated[bool, typer.Option("--add/--no-add", help="add them to the graph")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Pick N representative prompts: k-means on MiniLM embeddings, one medoid per cluster."""
    from graph.embedding import Embedder
    from graph.prompts import read_prompts
    from graph.universal import UniversalGraph, reference_prompt_id
    from tools.calibration.reference import pick_reference_prompts

    settings = ctx.obj
    embedder = Embedder(settings.embedding_model)
    picked = pick_reference_prompts(read_prompts(source, limit), n, embedder, seed)
    added = []
    if add:
        with UniversalGraph(settings.graph, embedder) as graph:
            added = [r.id for r in graph.add_reference_prompts(picked)]
    rows = [
        {"id": reference_prompt_id(p), "text": p, "added": reference_prompt_id(p) in added}
        for p in picked
    ]
    if as_json:
        print_json(rows)
        return
    print_table(
        f"{n} reference prompts from {source}",
        ["id", "prompt", "new"],
        [(r["id"], r["text"], "yes" if r["added"] else "") for r in rows],
    )


@ref_app.command("list")
def list_prompts(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """The reference prompts in the graph."""
    from graph.store import GraphStore

    with GraphStore(ctx.obj.graph.store_dir) as store:
        refs = store.reference_prompts()
    if as_json:
        print_json(refs)
        return
    print_table("reference prompts", ["id", "prompt"], [(r.id, r.text) for r in refs])
