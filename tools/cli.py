"""Assembly of the Typer application from each package's ``register(app)`` function.

Each command module imports heavy libraries (torch, diffusers, langgraph) inside its
command functions, so ``diffgraph --help`` stays fast.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from graph.errors import DiffGraphError

# Modules that contribute commands; each defines ``register(app: typer.Typer) -> None``.
COMMAND_MODULES = (
    "graph.cli",
    "evals.cli",
    "agents.pipeline.cli",
    "agents.demo.cli",
    "agents.chat.cli",
    "agents.webui.cli",
    "tools.weights.cli",
    "agents.construction.cli",
    "agents.selection.cli",
    "tools.calibration.cli",
    "tools.scorers.cli",
    "tools.autolora.cli",
    "planner.cli",
    "tools.world.cli",
)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="diffgraph",
        help="Pick and merge the right text-to-image experts for every prompt.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        cls=_CleanErrors,
    )

    @app.callback()
    def root(
        ctx: typer.Context,
        config: Annotated[
            Path | None,
            typer.Option("--config", help="settings file (default: ./diffgraph.toml if present)"),
        ] = None,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
    ) -> None:
        from tools.settings import load_settings

        _configure_logging(verbose)
        ctx.obj = load_settings(config)

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)
    return app


def _configure_logging(verbose: bool) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[
            RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=verbose)
        ],
        force=True,
    )
    for noisy in (
        "httpx",
        "httpx2",
        "openai",
        "chromadb",
        "urllib3",
        "sentence_transformers",
        "transformers",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # torchvision is left out on purpose (its wheels break beside CPU torch); transformers'
    # PIL image processors are the intended ones, so its fallback notice is noise.
    logging.getLogger("transformers.utils.import_utils").addFilter(
        lambda record: "requires torchvision (not installed)" not in record.getMessage()
    )


class _CleanErrors(TyperGroup):
    """Print user-facing errors as one red line and exit 2 instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DiffGraphError as exc:
            from rich.console import Console

            Console(stderr=True).print(
                f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(2) from exc
