"""One crawl at a time per data directory (the pid lock of :mod:`graph.lock`).

Two crawls on one data directory would share partial downloads and checkpoints; the second
one stops at once with the first one's process id.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from graph.errors import DiffGraphError
from graph.lock import pid_lock


class CrawlLockedError(DiffGraphError):
    """Another crawl holds the data directory."""


@contextmanager
def crawl_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder/crawl.lock`` (its owner's pid in ``crawl.pid``) for the block."""

    def busy(owner: str) -> CrawlLockedError:
        return CrawlLockedError(
            f"another crawl is running (pid {owner}) on the data directory of {folder}; wait "
            "for it to finish or stop it, then run again (its session resumes)"
        )

    with pid_lock(Path(folder), "crawl", busy):
        yield
