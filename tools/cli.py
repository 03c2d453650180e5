"""Assembly of the Typer application from each package's ``register(app)`` function.

Command modules are imported only when their command runs or shows its own help
(:mod:`tools.commands`), and each imports heavy libraries (torch, diffusers, langgraph)
inside its command functions, so ``diffgraph --help`` stays fast.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import sys
from pathlib import Path
from typing import Annotated

import typer

from graph.errors import DiffGraphError
from tools.commands import LazyGroup


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


# What the machine's disk or permissions refused: a user can act on these.
_FILESYSTEM = {
    errno.ENOSPC: "free disk space and run again",
    errno.EDQUOT: "free disk space (quota) and run again",
    errno.EROFS: "choose a writable location",
    errno.EACCES: "choose a location this user may write",
    errno.EPERM: "choose a location this user may write",
    errno.ENOTDIR: "a part of the path is a file: choose another path",
    errno.EISDIR: "the path is a folder: give a file path",
    errno.EEXIST: "the path exists as a file: choose another path",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.EFBIG: "the file system refuses a file this large",
}
_SQLITE = ("disk is full", "readonly database", "unable to open database file", "disk I/O")


class _CleanErrors(LazyGroup):
    """Print user-facing errors as one red line and exit 2 instead of a traceback."""

    def main(self, args=None, *rest, **kwargs):
        argv = sys.argv[1:] if args is None else list(args)
        undecodable = next((a for a in argv if _has_surrogates(a)), None)
        if undecodable is not None:
            _error(
                f"argument {undecodable.encode('utf-8', 'surrogateescape')!r} is not valid "
                "UTF-8: pass text in UTF-8 (check the terminal's or script's encoding)"
            )
            sys.exit(2)
        return super().main(args, *rest, **kwargs)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DiffGraphError as exc:
            _error(str(exc))
            raise typer.Exit(2) from exc
        except OSError as exc:
            if exc.errno not in _FILESYSTEM:
                raise
            logging.getLogger(__name__).debug("file system error", exc_info=True)
            where = f": {exc.filename}" if exc.filename else ""
            _error(f"{exc.strerror}{where}; {_FILESYSTEM[exc.errno]}")
            raise typer.Exit(2) from exc
        except sqlite3.OperationalError as exc:
            if not any(part in str(exc) for part in _SQLITE):
                raise
            _error(
                f"the graph database cannot be written ({exc}): the data directory "
                "(DIFFGRAPH_DATA_DIR) must be a writable folder with free space"
            )
            raise typer.Exit(2) from exc


def _has_surrogates(text: str) -> bool:
    """Python keeps argv bytes that are not UTF-8 as lone surrogates."""
    return any("\ud800" <= char <= "\udfff" for char in text)


def _error(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
