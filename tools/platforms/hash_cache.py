"""SHA-256 of local weight files, cached by (path, size, mtime) as A1111's ``cache.json``
does: a second crawl of an unchanged models folder reads no file again."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hashes (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL
)
"""


class HashCache:
    """A SQLite table of file hashes; an entry counts only while size and mtime match."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
        self._db.execute(_SCHEMA)
        self._db.commit()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def sha256(self, path: Path) -> str:
        """The file's SHA-256 (hex), hashed only when the cache has no current entry."""
        from tools.weights.files import sha256_file

        path = Path(path).resolve()
        stat = path.stat()
        key = str(path)
        with self._lock:
            row = self._db.execute(
                "SELECT size, mtime_ns, sha256 FROM hashes WHERE path = ?", (key,)
            ).fetchone()
        if row is not None and (row[0], row[1]) == (stat.st_size, stat.st_mtime_ns):
            self.hits += 1
            return row[2]
        self.misses += 1
        digest = sha256_file(path)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?)",
                (key, stat.st_size, stat.st_mtime_ns, digest),
            )
            self._db.commit()
        return digest

    def close(self) -> None:
        self._db.close()
