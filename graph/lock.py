"""Inter-process locks on a folder (``filelock``), each with its owner's pid beside it.

The writer lock makes one process at a time the writer of a data directory: graph edits,
compactions, imports, repairs and crawls take it; a second writer waits briefly, then stops
with the first one's pid. Readers take no lock. Within one process the writer lock is
re-entrant and shared by its threads (a crawl holds it for its session while its graph
writes take it again).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from graph.errors import DiffGraphError, GraphError

log = logging.getLogger(__name__)

WRITER_WAIT_S = 10.0

_held: dict[Path, list] = {}  # data dir -> [FileLock, holders in this process]
_held_guard = threading.Lock()


class WriterBusyError(GraphError):
    """Another process writes to the data directory."""


@contextmanager
def pid_lock(
    folder: Path, name: str, busy: Callable[[str], DiffGraphError], wait_s: float = 0.0
) -> Iterator[None]:
    """Hold ``folder/<name>.lock`` (owner pid in ``<name>.pid``) for the block.

    Waits up to ``wait_s`` seconds for another holder, then raises ``busy(owner pid)``.
    """
    lock = _acquire(Path(folder), name, busy, wait_s)
    try:
        yield
    finally:
        _release(lock, Path(folder), name)


@contextmanager
def writer_lock(data_dir: Path, wait_s: float | None = None) -> Iterator[None]:
    """Be the data directory's one writer for the block (waiting ``WRITER_WAIT_S`` unless
    told otherwise)."""
    wait_s = WRITER_WAIT_S if wait_s is None else wait_s
    key = Path(data_dir).resolve()
    with _held_guard:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
    if entry is None:
        lock = _acquire(key, "writer", lambda owner: _busy(key, owner), wait_s)
        with _held_guard:
            _held[key] = [lock, 1]
    try:
        yield
    finally:
        with _held_guard:
            entry = _held[key]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                _release(entry[0], key, "writer")


def _acquire(folder: Path, name: str, busy: Callable[[str], DiffGraphError], wait_s: float):
    from filelock import FileLock, Timeout

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GraphError(
            f"cannot write to the data directory {folder} ({exc.strerror}): set "
            "DIFFGRAPH_DATA_DIR (or data_dir in diffgraph.toml) to a writable folder"
        ) from exc
    pid_file = folder / f"{name}.pid"
    lock = FileLock(str(folder / f"{name}.lock"), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if wait_s <= 0:
            raise busy(_owner(pid_file)) from None
        log.info("waiting up to %gs for another writer (pid %s)", wait_s, _owner(pid_file))
        try:
            lock.acquire(timeout=wait_s)
        except Timeout:
            raise busy(_owner(pid_file)) from None
    try:
        pid_file.write_text(str(os.getpid()))
    except BaseException:
        lock.release()
        raise
    return lock


def _release(lock, folder: Path, name: str) -> None:
    (folder / f"{name}.pid").unlink(missing_ok=True)
    lock.release()


def _owner(pid_file: Path) -> str:
    try:
        return pid_file.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def _busy(data_dir: Path, owner: str) -> WriterBusyError:
    return WriterBusyError(
        f"another writer is running (pid {owner}) on the data directory {data_dir}: wait for "
        "it to finish (a crawl holds it for its session), then run again"
    )
