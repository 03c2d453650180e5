"""SQLite connections whose corruption errors name the file and the fix.

SQLite reports a damaged file (``SQLITE_CORRUPT``, ``SQLITE_NOTADB``) on whichever
statement first reads the bad page; these connections turn that into one
:class:`CorruptionError` wherever it happens.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from pathlib import Path

from graph.errors import CorruptionError

_DAMAGED = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


def connect(path: Path) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode (transactions are explicit)."""
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, factory=_Connection)
    db.path = Path(path)
    return db


def _translating(method: Callable) -> Callable:
    @functools.wraps(method)
    def call(self, *args):
        try:
            return method(self, *args)
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorcode", None) not in _DAMAGED:
                raise
            raise CorruptionError(
                f"graph metadata {self.connection.path} is damaged ({exc}): run `diffgraph "
                "graph check` to see which backup to restore, and `diffgraph graph check "
                "--repair` to restore it"
            ) from exc

    return call


class _Cursor(sqlite3.Cursor):
    execute = _translating(sqlite3.Cursor.execute)
    executemany = _translating(sqlite3.Cursor.executemany)
    executescript = _translating(sqlite3.Cursor.executescript)
    fetchone = _translating(sqlite3.Cursor.fetchone)
    fetchall = _translating(sqlite3.Cursor.fetchall)
    __next__ = _translating(sqlite3.Cursor.__next__)


class _Connection(sqlite3.Connection):
    path: Path

    def cursor(self, factory=_Cursor):
        return super().cursor(factory)

    def execute(self, *args):
        return self.cursor().execute(*args)

    def executemany(self, *args):
        return self.cursor().executemany(*args)

    def executescript(self, *args):
        return self.cursor().executescript(*args)
