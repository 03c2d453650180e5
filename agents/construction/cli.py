"""``diffgraph crawl``: build or update the universal graph from an expert platform."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import typer

from graph.errors import DiffGraphError, first_error
from graph.records import BaseFamily

_DURATION = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*$"
)


def register(app: typer.Typer) -> None:
    app.command("crawl")(crawl)


def parse_duration(text: str) -> float:
    """Seconds in ``2h``, ``90m``, ``1h30m``, ``45s`` or ``300``."""
    match = _DURATION.match(text)
    if not text.strip() or not match or not any(match.groups()):
        raise DiffGraphError(
            f"--time-budget {text!r}: expected a duration like 2h, 90m, 1h30m or 300s"
        )
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise DiffGraphError(f"--time-budget {text!r}: the budget must be positive")
    return total


def crawl(
    ctx: typer.Context,
    source: Annotated[
        str, typer.Option(help="civitai | huggingface | local | demo (local demo platform)")
    ] = "civitai",
    base: Annotated[BaseFamily, typer.Option(help="base model family")] = BaseFamily.SD15,
    types: Annotated[
        str, typer.Option(help="comma-separated: lora,checkpoint")
    ] = "lora,checkpoint",
    max_experts: Annotated[int, typer.Option(min=1, help="new experts / versions at most")] = 50,
    max_download_gb: Annotated[float, typer.Option(min=0.0, help="download budget")] = 20.0,
    time_budget: Annotated[str, typer.Option(help="e.g. 2h, 90m, 1h30m")] = "2h",
    calibrate: Annotated[
        bool,
        typer.Option("--calibrate/--no-calibrate", help="score experts on the reference prompts"),
    ] = True,
    platform_url: Annotated[
        str | None,
        typer.Option(help="platform base URL (default from settings; demo: started here)"),
    ] = None,
    path: Annotated[
        list[Path] | None, typer.Option(help="local model folder (repeatable; --source local)")
    ] = None,
    demo_revision: Annotated[
        int,
        typer.Option(min=1, max=2, help="demo catalogue revision (2: a new version, a removal)"),
    ] = 1,
    catalogue: Annotated[
        Literal["classic", "world"],
        typer.Option(
            help="demo platform catalogue: SD-style descriptions (classic, tiny random "
            "weights) or the small world's trained experts (world)"
        ),
    ] = "classic",
    ref_prompts: Annotated[
        Path | None,
        typer.Option(help="reference prompts to add first (.txt lines or .jsonl 'prompt')"),
    ] = None,
    lookup: Annotated[
        bool,
        typer.Option(
            "--lookup/--no-lookup",
            help="--source local: look each file's SHA-256 up on Civitai for its description "
            "(sends the hashes; off by default)",
        ),
    ] = False,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="do not resume an unfinished session")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Crawl a platform: register, download and calibrate experts; resumable after a kill."""
    from contextlib import ExitStack

    from pydantic import ValidationError

    from agents.construction.schemas import CrawlRequest

    settings = ctx.obj
    try:
        request = CrawlRequest(
            source=source,
            base=base,
            types=[t.strip() for t in types.split(",") if t.strip()],
            max_experts=max_experts,
            max_download_bytes=int(max_download_gb * 2**30),
            time_budget_s=parse_duration(time_budget),
            calibrate=calibrate,
            platform_url=platform_url,
            local_paths=[str(p.resolve()) for p in path or []],
            lookup=lookup,
        )
    except ValidationError as exc:
        raise DiffGraphError(f"invalid crawl option {first_error(exc, got_limit=200)}") from exc
    if request.source == "local" and not request.local_paths:
        raise DiffGraphError("--source local needs at least one --path to a model folder")
    for folder in path or []:
        if not folder.is_dir():
            raise DiffGraphError(
                f"--path {folder}: no such folder; give the A1111 / ComfyUI folder (or its "
                "models/Lora, models/Stable-diffusion folder)"
            )
    with ExitStack() as stack:
        if request.source == "demo" and request.platform_url is None:
            request = request.model_copy(
                update={"platform_url": _start_demo(settings, demo_revision, stack, catalogue)}
            )
        report = _run(request, settings, stack, fresh, as_json, ref_prompts)
    if as_json:
        from graph.console import print_json

        print_json(report)
    else:
        _print_report(report)


def _start_demo(settings, revision: int, stack, catalogue: str = "classic") -> str:
    from graph.console import err_console
    from tools.platforms.demo import DemoPlatform, demo_catalogue

    if catalogue == "world":
        from agents.demo.world import check_world, world_platform
        from tools.world import WORLD_DIR

        platform = world_platform(settings, check_world(WORLD_DIR))
    else:
        platform = DemoPlatform(
            settings.data_dir / "demo-platform",
            catalogue=demo_catalogue(revision),
            port=settings.platforms.demo_port,
        )
    try:
        stack.enter_context(platform)
    except OSError as exc:
        raise DiffGraphError(
            f"cannot start the demo platform on port {settings.platforms.demo_port}: {exc}; set "
            "DIFFGRAPH_PLATFORMS__DEMO_PORT to a free port"
        ) from exc
    what = "the small world's trained experts" if catalogue == "world" else f"revision {revision}"
    err_console.print(f"[yellow]DEMO DATA[/]: demo platform ({what}) at {platform.url}")
    return platform.url


def _run(request, settings, stack, fresh: bool, quiet: bool, ref_prompts: Path | None):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agents.construction.graph import make_calibrator, make_context, run_crawl
    from graph.console import err_console
    from graph.universal import UniversalGraph

    graph = stack.enter_context(UniversalGraph(settings.graph))
    if ref_prompts is not None:
        from graph.prompts import read_prompts

        graph.add_reference_prompts(read_prompts(ref_prompts))
    calibrator = (
        make_calibrator(settings, graph, request.base, stack) if request.calibrate else None
    )
    context = make_context(request, settings, graph, stack, calibrator)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=quiet,
        transient=True,
    )
    task = progress.add_task("discovering", total=None)

    def on_update(node: str, values: dict) -> None:
        if node == "discover":
            progress.update(task, total=len(values.get("queue", [])), description="crawling")
        elif node == "finish_item":
            for outcome in values.get("outcomes", []):
                reason = f" - {outcome['reason']}" if outcome.get("reason") else ""
                progress.console.print(
                    f"{outcome['status']:>10} {outcome['item']} {outcome['name']}{reason}"
                )
            progress.advance(task)
        elif values.get("current"):
            progress.update(task, description=node.replace("_", " "))

    with progress:
        return run_crawl(
            request, context, settings.data_dir / "crawl" / "checkpoints.sqlite", on_update, fresh
        )


def _print_report(report) -> None:
    from graph.console import console, print_table

    title = f"crawl {report.session} ({report.source}, {report.base.value})"
    if report.demo:
        title += " - DEMO DATA"
    counts = [
        len(report.registered),
        len(report.updated),
        len(report.deprecated),
        len(report.reactivated),
        len(report.skipped),
        len(report.failed),
        report.up_to_date,
        report.calibration_edges,
        f"{report.downloaded_bytes / 2**20:.1f}",
    ]
    columns = ["registered", "updated", "deprecated", "reactivated", "skipped", "failed"]
    columns += ["up to date", "edges"]
    print_table(title, [*columns, "MB"], [counts])
    problems = report.skipped + report.failed
    if problems:
        print_table(
            "skipped and failed",
            ["status", "item", "reason"],
            [(o.status, o.item, o.reason) for o in problems],
        )
    console.print(
        f"summaries: {report.llm_summaries} by the LLM, "
        f"{report.no_llm_summaries} by the no-LLM policy"
    )
    if report.calibration_demo:
        console.print("calibration ran on demo backends (tiny models / scorers): DEMO scores")
    if report.stopped_by:
        console.print(f"stopped by: {report.stopped_by}")
    for note in report.notes:
        console.print(f"note: {note}")
