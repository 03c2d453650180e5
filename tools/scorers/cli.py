"""``diffgraph scorers status``: which scorers have their weights on this machine."""

from __future__ import annotations

from typing import Annotated

import typer

from graph.console import print_json, print_table

scorers_app = typer.Typer(help="Image-quality scorers.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(scorers_app, name="scorers")


@scorers_app.command("status")
def status(
    ctx: typer.Context,
    load: Annotated[bool, typer.Option("--load", help="also load each model (slow)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """For each metric: ready (weights found / loaded) or what is missing and where to put it."""
    from graph.errors import DiffGraphError
    from tools.scorers.load import METRICS, check_weights, load_scorers

    settings = ctx.obj
    rows = []
    for metric in METRICS:
        try:
            if load:
                load_scorers(settings.scorers, [metric], allow_pickle=settings.allow_pickle)
            else:
                check_weights(settings.scorers, metric)
            rows.append({"metric": metric, "ready": True, "detail": ""})
        except DiffGraphError as exc:
            rows.append({"metric": metric, "ready": False, "detail": str(exc)})
    if as_json:
        print_json(rows)
        return
    print_table(
        "scorers",
        ["metric", "ready", "detail"],
        [(r["metric"], "yes" if r["ready"] else "no", r["detail"]) for r in rows],
    )
