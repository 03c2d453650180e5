"""Reading files a user hands to a command: UTF-8 text (a BOM is dropped) and JSON.

Each failure is one :class:`DiffGraphError` naming the file and the fix, never a
``UnicodeDecodeError`` or ``RecursionError`` traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from graph.errors import DiffGraphError

BOM = "\ufeff"


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of ``path`` without a leading byte-order mark."""
    path = Path(path)
    if not path.is_file():
        problem = "is a folder" if path.is_dir() else "does not exist"
        raise DiffGraphError(f"{what} {path} {problem}: give the path of a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DiffGraphError(f"cannot read {what} {path}: {exc.strerror}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DiffGraphError(
            f"{what} {path} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}): "
            "save it as UTF-8"
        ) from exc


def parse_json(text: str, where: str) -> Any:
    """``text`` parsed as JSON; ``where`` names it in errors (a file, ``file:line``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DiffGraphError(f"{where} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise DiffGraphError(
            f"{where} nests JSON arrays or objects too deeply to read: flatten it"
        ) from exc
