"""``diffgraph eval ...``: evaluate recorded traces (and, later, benchmarks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from graph.console import console, print_json, print_table
from graph.errors import DiffGraphError

eval_app = typer.Typer(help="Evaluate agent traces and run benchmarks.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")


def _gold(labels: Path | None) -> dict[str, list[str]]:
    if labels is None:
        return {}
    if not labels.is_file():
        raise DiffGraphError(f"labels file {labels} does not exist")
    gold = {}
    for number, line in enumerate(labels.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            gold[row["prompt"]] = list(row["gold"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DiffGraphError(
                f"{labels}:{number}: expected a JSON object with 'prompt' and 'gold' (a list of "
                f"expert ids or skill groups): {exc}"
            ) from exc
    return gold


def _groups(catalogue: Path | None) -> dict[str, str]:
    if catalogue is None:
        return {}
    try:
        return dict(json.loads(catalogue.read_text())["groups"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DiffGraphError(
            f"catalogue {catalogue}: expected JSON with a 'groups' object (expert id → skill "
            f"group): {exc}"
        ) from exc


@eval_app.command("traces")
def traces(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="trace files or folders")],
    labels: Annotated[
        Path | None, typer.Option(help="JSONL of {prompt, gold} for selection precision/recall")
    ] = None,
    catalogue: Annotated[
        Path | None, typer.Option(help="JSON with 'groups' (expert id → skill group)")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check/--no-check", help="check selection invariants on the graph")
    ] = True,
    judge: Annotated[bool, typer.Option("--judge", help="LLM judge of each selection")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Latency, LLM usage, fallback / error / retry rates, selection quality, invariants."""
    from evals.traces import evaluate

    settings = ctx.obj
    store = judge_fn = None
    if check and settings.graph.store_dir.exists():
        from graph.store import GraphStore

        store = GraphStore(settings.graph.store_dir)
    if judge:
        from evals.judge import make_judge
        from tools.llm import make_chat_model

        model = make_chat_model(settings.llm)
        if model is None:
            raise DiffGraphError(
                "--judge needs an LLM: set [llm] in diffgraph.toml or "
                "OPENAI_BASE_URL / OPENAI_MODEL"
            )
        judge_fn = make_judge(model)
    try:
        report = evaluate(paths, _gold(labels), _groups(catalogue), store, judge_fn)
    finally:
        if store is not None:
            store.close()
    if as_json:
        print_json(report)
        return
    _print(report)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _print(report) -> None:
    print_table(
        f"{report.runs} runs in {report.files} trace files",
        [
            "agent",
            "runs",
            "done",
            "LLM calls/run",
            "tokens/run (in/out)",
            "fallback",
            "error",
            "schema retry",
            "latency ms",
        ],
        [
            (
                a.agent,
                a.runs,
                a.completed,
                _fmt(a.llm_calls_per_run, 2),
                f"{a.prompt_tokens_per_run:.0f}/{a.completion_tokens_per_run:.0f}",
                f"{a.fallback_rate:.0%}",
                f"{a.error_rate:.0%}",
                f"{a.schema_retry_rate:.0%}",
                _fmt(a.latency_ms_mean),
            )
            for a in report.agents
        ],
    )
    print_table(
        "nodes",
        ["agent", "node", "count", "mean ms", "p50 ms", "p95 ms"],
        [
            (
                n.agent,
                n.node,
                n.count,
                _fmt(n.latency_ms_mean),
                _fmt(n.latency_ms_p50),
                _fmt(n.latency_ms_p95),
            )
            for n in report.nodes
        ],
    )
    if report.selection_means:
        m = report.selection_means
        console.print(
            f"selection on {len(report.selection)} labelled runs: precision "
            f"{m['precision']:.3f} · recall {m['recall']:.3f} · redundancy {m['redundancy']:.3f}"
        )
    if report.invariants_checked:
        status = (
            "[green]all hold[/]"
            if not report.violations
            else (f"[red]{len(report.violations)} violation(s)[/]")
        )
        console.print(f"invariants on {report.invariants_checked} selection runs: {status}")
        for v in report.violations:
            console.print(f"  {v.run_id}: {v.rule}: {v.detail}")
    if report.judge_mean is not None:
        console.print(
            f"LLM judge: mean {report.judge_mean:.3f} (normalised 0-1) over "
            f"{len(report.judge)} selections"
        )
