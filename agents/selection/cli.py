"""``diffgraph select "prompt"``: the experts to merge for a prompt, and why."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from graph.console import console, print_json, print_table
from graph.records import BaseFamily


def register(app: typer.Typer) -> None:
    app.command("select")(select_command)


def select_command(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="the image prompt (A1111 syntax accepted)")],
    base: Annotated[
        BaseFamily | None, typer.Option(help="base-model family (default: selection.family)")
    ] = None,
    no_llm: Annotated[
        bool, typer.Option("--no-llm", help="use the no-LLM policy even if an LLM is set")
    ] = False,
    retriever: Annotated[
        Literal["description", "autolora", "both"] | None,
        typer.Option(help="LoRA retrieval (default: selection.retriever)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Choose checkpoints and LoRAs for PROMPT; show the reasons and what was dropped."""
    from agents.selection import make_context, select
    from graph.universal import UniversalGraph

    settings = ctx.obj
    updates = {}
    selection = {"family": base, "retriever": retriever}
    if any(v is not None for v in selection.values()):
        updates["selection"] = settings.selection.model_copy(
            update={k: v for k, v in selection.items() if v is not None}
        )
    if no_llm:
        updates["llm"] = settings.llm.model_copy(update={"base_url": None, "model": None})
    settings = settings.model_copy(update=updates)
    with UniversalGraph(settings.graph) as graph:
        result = select(prompt, make_context(settings, graph))
    if as_json:
        print_json(result)
        return
    _show(result)


def _show(result) -> None:
    label = {
        "llm": "LLM",
        "no-llm": "no-LLM policy (no LLM configured)",
        "fallback": "LLM with fallback to the no-LLM policy",
    }[result.mode]
    console.print(f"[bold]summary[/]: {result.summary or '-'}")
    console.print(f"[bold]attributes[/]: {', '.join(result.attributes) or '-'}")
    rows = [
        (e.kind.value, e.id, e.name, _sim(e.similarity), e.reason)
        for e in result.checkpoints + result.loras
    ]
    if result.base_model:
        rows.insert(
            0,
            (
                "ckpt",
                "(base model)",
                f"{result.family.value} base model",
                "",
                "no checkpoint expert fits; the configured base model is used",
            ),
        )
    print_table(
        f"selected for {result.family.value} · mode: {label}"
        + (" · DEMO experts" if result.demo else ""),
        ["kind", "id", "name", "similarity", "reason"],
        rows,
    )
    if result.dropped:
        print_table(
            "dropped candidates",
            ["kind", "id", "stage", "similarity", "reason"],
            [(d.kind.value, d.id, d.stage, _sim(d.similarity), d.reason) for d in result.dropped],
        )
    for warning in result.warnings:
        console.print(f"[yellow]note:[/] {warning}", highlight=False)
    console.print(
        f"LLM requests {result.llm_requests} · {result.latency_ms:.0f} ms · trace "
        f"{result.trace_path}",
        highlight=False,
    )


def _sim(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"
