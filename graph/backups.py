"""Rolling backups of the graph's metadata: ``<store>/backups/graph-<n>.sqlite``.

The store copies ``graph.sqlite`` with SQLite's online backup API before its first write
(and again once the last copy is ``BACKUP_INTERVAL_S`` old), keeping the newest
``KEEP_BACKUPS``. Segment files are immutable, so a copy of the metadata plus the segments
it registers is a whole graph: segments that a kept backup registers stay on disk until
that backup is pruned.
"""

from __future__ import annotations

import os
import re
import sqlite3
from contextlib import closing
from pathlib import Path

KEEP_BACKUPS = 5
BACKUP_INTERVAL_S = 600.0
_NAME = re.compile(r"graph-(\d+)\.sqlite")


def backup_dir(root: Path) -> Path:
    return Path(root) / "backups"


def backups(root: Path) -> list[Path]:
    """The store's backups, oldest first."""
    found = [
        (int(match.group(1)), path)
        for path in backup_dir(root).glob("graph-*.sqlite")
        if (match := _NAME.fullmatch(path.name))
    ]
    return [path for _, path in sorted(found)]


def take_backup(db: sqlite3.Connection, root: Path) -> Path:
    """Copy the database behind ``db`` to the next ``graph-<n>.sqlite``."""
    existing = backups(root)
    number = int(_NAME.fullmatch(existing[-1].name).group(1)) + 1 if existing else 1
    target = backup_dir(root) / f"graph-{number}.sqlite"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{target.name}")
    try:
        with closing(sqlite3.connect(tmp)) as copy:
            db.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def registered_segments(path: Path) -> set[str]:
    """Segment names a backup (or any graph.sqlite) registers; empty when it is unreadable."""
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return {row[0] for row in db.execute("SELECT name FROM segments")}
    except sqlite3.Error:
        return set()


def backed_up_segments(root: Path) -> set[str]:
    """Segment names that some kept backup registers."""
    return set().union(*(registered_segments(path) for path in backups(root)))


def prune(root: Path, segment_dir: Path, live: set[str], keep: int = KEEP_BACKUPS) -> None:
    """Drop all but the newest ``keep`` backups, and the segments only they registered
    (``live``: the segments graph.sqlite registers)."""
    paths = backups(root)
    stale, kept = paths[:-keep], paths[-keep:]
    if not stale:
        return
    needed = live.union(*(registered_segments(path) for path in kept))
    for path in stale:
        for name in registered_segments(path) - needed:
            (segment_dir / name).unlink(missing_ok=True)
        path.unlink()
