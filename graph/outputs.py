"""Checking where a command will write, before it loads models or does any work."""

from __future__ import annotations

import os
from pathlib import Path

from graph.errors import DiffGraphError


def check_output_file(path: Path, what: str, example: str = "out.safetensors") -> None:
    """Refuse a file output that is a folder or lies where nothing can be written."""
    path = Path(path)
    if path.is_dir():
        raise DiffGraphError(f"{what} {path} is a folder: give a file path, e.g. {path / example}")
    _check_writable(path.parent, path, what)


def check_output_dir(path: Path, what: str) -> None:
    """Refuse an output folder that is a file or lies where nothing can be written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DiffGraphError(f"{what} {path} is a file: give a folder (it is created if missing)")
    _check_writable(path, path, what)


def _check_writable(folder: Path, path: Path, what: str) -> None:
    """The nearest existing folder of ``folder`` must be a writable folder."""
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise DiffGraphError(f"{what} {path} cannot be created: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DiffGraphError(
            f"{what} {path} cannot be written: {existing} is read-only for this user; "
            "choose another location"
        )
