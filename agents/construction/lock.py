"""One crawl at a time per data directory: an inter-process lock (``filelock``).

Two crawls on one data directory would share partial downloads and checkpoints; the second
one stops at once with the first one's process id.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from graph.errors import DiffGraphError


class CrawlLockedError(DiffGraphError):
    """Another crawl holds the data directory."""


@contextmanager
def crawl_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder/crawl.lock`` (its owner's pid in ``crawl.pid``) for the block."""
    from filelock import FileLock, Timeout

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pid_file = folder / "crawl.pid"
    lock = FileLock(str(folder / "crawl.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        try:
            owner = pid_file.read_text().strip() or "unknown"
        except OSError:
            owner = "unknown"
        raise CrawlLockedError(
            f"another crawl is running (pid {owner}) on the data directory of {folder}; wait "
            "for it to finish or stop it, then run again (its session resumes)"
        ) from None
    try:
        pid_file.write_text(str(os.getpid()))
        yield
    finally:
        pid_file.unlink(missing_ok=True)
        lock.release()
