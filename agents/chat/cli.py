"""``diffgraph chat``: a terminal conversation that refines a prompt turn by turn."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from graph.errors import DiffGraphError
from tools.seed_option import seed_option

if TYPE_CHECKING:
    from agents.chat.display import ChatView


def register(app: typer.Typer) -> None:
    app.command("chat")(chat)


def chat(
    ctx: typer.Context,
    thread: Annotated[
        str | None, typer.Option(help="resume (or create) this thread; default: a new one")
    ] = None,
    out: Annotated[
        Path, typer.Option(help="folder for each turn's images, recipe and exports")
    ] = Path("out") / "chat",
    planner: Annotated[
        Literal["learned", "equal", "random", "llm"],
        typer.Option(help="learned (equal if none is trained), equal, random or llm"),
    ] = "learned",
    seed: Annotated[
        int | None, seed_option("first seed (replaces a resumed thread's seed)")
    ] = None,
    no_llm: Annotated[
        bool, typer.Option("--no-llm", help="read messages with the rules even if an LLM is set")
    ] = False,
    script: Annotated[
        Path | None, typer.Option(help="read the messages from FILE, one per line")
    ] = None,
    size: Annotated[str | None, typer.Option(help="WIDTHxHEIGHT of the images")] = None,
    steps: Annotated[int | None, typer.Option(min=1, max=500, help="sampling steps")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per turn")] = False,
) -> None:
    """Write a prompt, then refine it turn by turn; /help lists the commands.

    Messages come from the terminal, from piped stdin, or from --script FILE.
    """
    from agents.chat.display import ChatView
    from agents.chat.graph import make_context, open_session, thread_id, threads_path
    from agents.pipeline.cli import parse_size
    from agents.pipeline.context import build_context
    from agents.pipeline.pipeline import GenerateOptions

    settings = ctx.obj
    if no_llm:
        llm = settings.llm.model_copy(update={"base_url": None, "model": None})
        settings = settings.model_copy(update={"llm": llm})
    from graph.input_files import read_text
    from graph.outputs import check_output_dir

    width, height = parse_size(size)
    check_output_dir(out, "--out")
    lines = read_text(script, "script").splitlines() if script is not None else None
    thread = thread_id(thread)
    interactive = script is None and sys.stdin.isatty()
    view = ChatView(as_json, echo=not interactive)
    pipeline = build_context(settings, planner=planner)
    options = GenerateOptions(width=width, height=height, steps=steps)
    try:
        with open_session(
            threads_path(settings), make_context(pipeline, out, options), thread, seed
        ) as session:
            view.opened(session)
            for message in _messages(lines, interactive, view):
                try:
                    report = session.turn(message)
                except DiffGraphError as exc:
                    view.error(exc)
                    continue
                except KeyboardInterrupt:
                    if not interactive:
                        raise
                    view.interrupted()
                    continue
                view.turn(report)
                if report.done:
                    break
            view.closed(session)
    finally:
        pipeline.graph.close()


def _messages(script: list[str] | None, interactive: bool, view: ChatView) -> Iterator[str]:
    """Non-blank lines that are not ``#`` comments: from the terminal, the script or stdin."""
    if interactive:
        while (line := view.ask()) is not None:
            if line.strip():
                yield line.strip()
        return
    for line in sys.stdin if script is None else script:
        text = line.strip()
        if text and not text.startswith("#"):
            view.echo(text)
            yield text
