"""A lock held by another process, for the tests of inter-process locks."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOLDER = """
import importlib, sys
module, name = sys.argv[1].rsplit(".", 1)
with getattr(importlib.import_module(module), name)(sys.argv[2]):
    print("locked", flush=True)
    sys.stdin.readline()
"""


@contextmanager
def held_elsewhere(lock: str, path: Path) -> Iterator[int]:
    """Another process holds ``lock`` (a dotted name such as ``graph.lock.writer_lock``) on
    ``path`` for the block; its pid."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, lock, str(path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder.pid
    finally:
        holder.communicate("\n", timeout=60)
