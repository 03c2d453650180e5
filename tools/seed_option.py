"""The ``--seed`` option of every command that draws or samples.

Its range is checked here rather than by Typer's ``min``/``max``, so a seed out of range
stops with the CLI's one-line error (tools/cli.py) instead of Typer's usage panel.
"""

from __future__ import annotations

from typing import Any

import typer

from graph.errors import DiffGraphError
from tools.generation.request import MAX_SEED


def seed_option(help: str = "random seed", maximum: int = MAX_SEED) -> Any:
    """A ``--seed`` option taking 0 to ``maximum``."""

    def check(value: int | None) -> int | None:
        if value is not None and not 0 <= value <= maximum:
            raise DiffGraphError(f"--seed {value} is out of range: give a seed from 0 to {maximum}")
        return value

    return typer.Option(callback=check, help=f"{help} (0 to {maximum})")
