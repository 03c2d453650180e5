"""``diffgraph graph ...``: inspect and edit the universal graph."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from graph.config import GraphConfig
from graph.console import console, print_json, print_table
from graph.errors import CorruptionError, GraphError, first_error
from graph.records import BaseFamily, ExpertInput, ExpertKind, ExpertStatus

graph_app = typer.Typer(help="Inspect and edit the universal graph.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def register(app: typer.Typer) -> None:
    app.add_typer(graph_app, name="graph")


def _config(ctx: typer.Context) -> GraphConfig:
    return ctx.obj.graph


def _open(ctx: typer.Context):
    from graph.universal import UniversalGraph

    return UniversalGraph(_config(ctx))


@graph_app.command()
def stats(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Counts of experts, reference prompts, calibration edges and metrics."""
    from graph.store import GraphStore

    with GraphStore(_config(ctx).store_dir) as store:
        data = store.stats()
    if as_json:
        print_json(data)
        return
    print_table(
        f"graph at {_config(ctx).store_dir}",
        ["kind", "base", "status", "experts"],
        [(r["kind"], r["base"], r["status"], r["count"]) for r in data["by_kind_base_status"]],
    )
    console.print(
        f"experts {data['experts']} · reference prompts {data['reference_prompts']} · "
        f"calibration edges {data['calibration_edges']} · metrics "
        f"{', '.join(data['metrics']) or '-'} · revision {data['revision']}"
    )


@graph_app.command("add-expert")
def add_expert(
    ctx: typer.Context,
    record: Annotated[
        Path | None,
        typer.Argument(help="JSON file with one expert record or a list of them"),
    ] = None,
    expert_id: Annotated[str | None, typer.Option("--id")] = None,
    kind: Annotated[ExpertKind | None, typer.Option()] = None,
    base: Annotated[BaseFamily | None, typer.Option()] = None,
    name: Annotated[str | None, typer.Option()] = None,
    description: Annotated[str, typer.Option(help="skill description (embedded)")] = "",
    trigger: Annotated[list[str] | None, typer.Option(help="trigger word (repeatable)")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="tag (repeatable)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Register expert node(s) from a JSON file or from options."""
    experts = _experts_from_input(record, expert_id, kind, base, name, description, trigger, tag)
    with _open(ctx) as graph:
        graph.add_experts(experts)
    if as_json:
        print_json({"added": [e.id for e in experts]})
    else:
        console.print(f"added {len(experts)} expert(s): {', '.join(e.id for e in experts)}")


def _experts_from_input(record, expert_id, kind, base, name, description, trigger, tag):
    try:
        if record is not None:
            from graph.input_files import parse_json, read_text

            data = parse_json(read_text(record, "expert record file"), str(record))
            items = data if isinstance(data, list) else [data]
            return [ExpertInput.model_validate(item) for item in items]
        missing = [
            flag
            for flag, value in (("--id", expert_id), ("--kind", kind), ("--base", base))
            if value is None
        ]
        if missing:
            raise GraphError(
                f"missing {', '.join(missing)}: give a JSON record file or --id, --kind, --base"
            )
        return [
            ExpertInput(
                id=expert_id,
                kind=kind,
                base=base,
                name=name or expert_id,
                description=description,
                trigger_words=trigger or [],
                tags=tag or [],
            )
        ]
    except ValidationError as exc:
        raise GraphError(f"invalid expert record: {first_error(exc, got_limit=80)}") from exc


@graph_app.command()
def deprecate(
    ctx: typer.Context,
    expert_id: Annotated[str, typer.Argument(help="expert id")],
    reason: Annotated[str, typer.Option(help="why")] = "deprecated by user",
) -> None:
    """Mark an expert deprecated (kept for history, never selected)."""
    with _open(ctx) as graph:
        graph.deprecate(expert_id, reason)
    console.print(f"deprecated {expert_id}")


@graph_app.command()
def enable(
    ctx: typer.Context,
    expert_id: Annotated[str, typer.Argument(help="expert id")],
) -> None:
    """Re-activate a deprecated expert (e.g. one a crawl retired as removed upstream)."""
    with _open(ctx) as graph:
        changed = graph.enable(expert_id)
    console.print(f"enabled {expert_id}" if changed else f"{expert_id} is active already")


@graph_app.command()
def remove(
    ctx: typer.Context,
    expert_id: Annotated[str, typer.Argument(help="expert id")],
) -> None:
    """Delete an expert and its calibration edges."""
    with _open(ctx) as graph:
        graph.remove(expert_id)
    console.print(f"removed {expert_id}")


@graph_app.command("add-ref-prompts")
def add_ref_prompts(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Argument(help="text file (one prompt per line) or JSONL with a 'prompt' field"),
    ] = None,
    text: Annotated[list[str] | None, typer.Option(help="a prompt (repeatable)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Add reference-prompt nodes (texts already present are skipped)."""
    from graph.prompts import read_prompts

    texts = list(text or [])
    if file is not None:
        texts += read_prompts(file)
    if not texts:
        raise GraphError("no prompts given: pass a file or --text")
    with _open(ctx) as graph:
        added = graph.add_reference_prompts(texts)
    if as_json:
        print_json({"added": [r.id for r in added]})
    else:
        console.print(f"added {len(added)} reference prompt(s), {len(texts) - len(added)} known")


@graph_app.command()
def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="what the expert should be good at")],
    kind: Annotated[ExpertKind | None, typer.Option()] = None,
    base: Annotated[BaseFamily | None, typer.Option()] = None,
    k: Annotated[int, typer.Option(min=1, max=1000)] = 5,
    include_deprecated: Annotated[bool, typer.Option("--include-deprecated")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Top-k experts by similarity of their skill description to QUERY."""
    status = None if include_deprecated else ExpertStatus.ACTIVE
    with _open(ctx) as graph:
        hits = graph.search(query, k=k, kind=kind, base=base, status=status)
    if as_json:
        print_json([{"similarity": round(s, 4), **e.model_dump(mode="json")} for e, s in hits])
        return
    print_table(
        f"top {k} for {query!r}",
        ["similarity", "id", "kind", "base", "name", "description"],
        [
            (f"{s:.3f}", e.id, e.kind.value, e.base.value, e.name, e.description[:80])
            for e, s in hits
        ],
    )


@graph_app.command()
def show(
    ctx: typer.Context,
    expert_id: Annotated[str, typer.Argument(help="expert id")],
    as_json: JsonFlag = False,
) -> None:
    """One expert's record and its version history."""
    from graph.store import GraphStore

    with GraphStore(_config(ctx).store_dir) as store:
        expert = store.expert(expert_id)
        history = store.history(expert_id)
    if as_json:
        print_json({"expert": expert, "history": [e.id for e in history]})
        return
    console.print_json(expert.model_dump_json())
    console.print("history: " + " → ".join(f"{e.id} ({e.status.value})" for e in history))


@graph_app.command("export")
def export_graph(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="archive to write (.zip)")],
) -> None:
    """Write the whole graph to one archive."""
    from graph.archive import export_archive
    from graph.outputs import check_output_file
    from graph.store import GraphStore

    check_output_file(path, "archive", "graph.zip")
    with GraphStore(_config(ctx).store_dir) as store:
        manifest = export_archive(store, path)
    console.print(
        f"wrote {path}: {manifest['experts']} experts, {manifest['reference_prompts']} "
        f"reference prompts, {manifest['calibration_edges']} edges"
    )


@graph_app.command("import")
def import_graph(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="archive written by `diffgraph graph export`")],
    replace: Annotated[bool, typer.Option("--replace", help="replace a non-empty graph")] = False,
) -> None:
    """Replace the graph with an archive's (validated fully before anything changes)."""
    from graph.store import GraphStore
    from graph.universal import UniversalGraph

    config = _config(ctx)
    if not replace:  # a damaged graph can still be replaced
        with GraphStore(config.store_dir) as store:
            existing = len(store)
    if not replace and existing:
        raise GraphError(
            f"the graph at {config.store_dir} has {existing} experts: pass --replace to "
            "overwrite it (export it first to keep a copy)"
        )
    graph, stats_ = UniversalGraph.import_(config, path)
    graph.close()
    console.print(
        f"imported {stats_['experts']} experts, {stats_['reference_prompts']} reference "
        f"prompts, {stats_['calibration_edges']} edges"
    )


@graph_app.command()
def check(
    ctx: typer.Context,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="quarantine what is broken (never deletes), restore a lost graph.sqlite from "
            "the newest good backup, rebuild the index",
        ),
    ] = False,
    restore: Annotated[
        int | None,
        typer.Option(
            "--restore", min=1, help="put back backups/graph-N.sqlite (undoes later writes)"
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Verify every segment, record and index entry; exit 2 when something is broken."""
    from graph.check import check_graph

    config = _config(ctx)
    report = check_graph(config, repair=repair, restore=restore)
    remaining = check_graph(config) if report.repaired else report
    if as_json:
        print_json({**report.as_dict(), "remaining": len(remaining.findings)})
    else:
        _show_check(report)
    if remaining.findings:
        raise CorruptionError(
            f"{len(remaining.findings)} problem(s) in the graph at {config.data_dir}"
            + ("" if report.repaired else ": run `diffgraph graph check --repair`")
        )


def _show_check(report) -> None:
    if report.findings:
        print_table(
            "repaired" if report.repaired else "problems",
            ["what", "problem", "done" if report.repaired else "--repair will"],
            [(f.what, f.problem, f.action) for f in report.findings],
        )
    for note in report.notes:
        console.print(note, highlight=False)
    if report.quarantine:
        console.print(f"quarantined to {report.quarantine}", highlight=False)
    if not report.findings:
        console.print("the graph is sound", highlight=False)
    if report.backups:
        console.print(f"backups: {report.backups[-1]} is the newest of {len(report.backups)}")
