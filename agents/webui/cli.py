"""``diffgraph serve``: the web UI in a browser, on this machine unless told otherwise."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

import typer

from graph.errors import DiffGraphError


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_hint(data_dir: Path, port: int = 7860) -> str:
    """The line that tells how to open a graph (the demo's) in the web UI."""
    return (
        f"[bold]Open it in a browser[/]: DIFFGRAPH_DATA_DIR={data_dir} diffgraph serve, then "
        f"{url('127.0.0.1', port)} (the web UI; in the small world, after the exports above)"
    )


def url(host: str, port: int) -> str:
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}/"


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port to listen on")] = 7860,
    allow_remote: Annotated[
        bool,
        typer.Option("--allow-remote", help="let --host be an address other machines can reach"),
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="DIFFGRAPH_WEBUI_TOKEN",
            help="access token: the page asks for it as the password",
            show_envvar=True,
        ),
    ] = None,
    planner: Annotated[
        Literal["learned", "equal", "random", "llm"],
        typer.Option(help="learned (equal if none is trained), equal, random or llm"),
    ] = "learned",
    out: Annotated[
        Path, typer.Option(help="folder for each thread's images, recipes and exports")
    ] = Path("out") / "webui",
    no_llm: Annotated[
        bool, typer.Option("--no-llm", help="read messages with the rules even if an LLM is set")
    ] = False,
) -> None:
    """Serve the web UI: generate and chat, steer, export, browse the graph, crawl, traces."""
    from graph.console import err_console

    if not is_loopback(host) and not allow_remote:
        raise DiffGraphError(
            f"--host {host} lets other machines reach the UI (and run generations, crawls and "
            "graph edits): pass --allow-remote to confirm, and set --token"
        )
    if token is not None and len(token) < 8:
        raise DiffGraphError("--token is too short: use at least 8 characters")
    settings = ctx.obj
    if no_llm:
        llm = settings.llm.model_copy(update={"base_url": None, "model": None})
        settings = settings.model_copy(update={"llm": llm})
    if not is_loopback(host):
        err_console.print(
            f"[bold yellow]warning:[/] listening on {host}: other machines can reach this UI"
            + ("" if token else " without a token (set --token)"),
            highlight=False,
        )
    from agents.pipeline.context import build_context
    from agents.webui.app import launch
    from agents.webui.service import WebService

    pipeline = build_context(settings, planner=planner)
    config = ctx.find_root().params.get("config")
    service = WebService(settings, pipeline, out, config_file=config)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    err_console.print(f"DiffGraph web UI at [bold]{url(shown, port)}[/] (Ctrl-C stops it)")
    for part, what, demo in service.backends():
        if demo:
            err_console.print(f"  [yellow]{part}[/]: {what}", highlight=False)
    try:
        launch(service, host, port, token, block=True)
    except OSError as exc:
        raise DiffGraphError(
            f"cannot listen on {host}:{port}: {exc}; choose another --port"
        ) from exc
    finally:
        pipeline.graph.close()
