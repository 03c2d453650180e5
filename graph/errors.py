"""Errors raised by the graph package; each names the thing and the fix."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


def first_error(exc: ValidationError, got_limit: int | None = None) -> str:
    """A pydantic error's first problem as one line, ``field: message``; with ``got_limit``,
    also the rejected input (its repr cut to that many characters)."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    line = f"{where}: {err['msg']}" if where else err["msg"]
    if got_limit is None:
        return line
    got = repr(err.get("input"))
    return f"{line} (got {got if len(got) <= got_limit else got[: got_limit - 3] + '...'})"


class DiffGraphError(Exception):
    """An error a user can act on: the message names the thing and the fix.

    Every package's user-facing errors derive from it; the CLI prints the message
    (no traceback) and exits with status 2.
    """


class GraphError(DiffGraphError, ValueError):
    """Bad input or a store that cannot be used as asked."""


class UnknownExpertError(GraphError, KeyError):
    def __init__(self, expert_id: str) -> None:
        super().__init__(
            f"no expert with id {expert_id!r} in the graph (see `diffgraph graph stats`)"
        )
        self.expert_id = expert_id

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DuplicateIdError(GraphError):
    pass


class SchemaVersionError(GraphError):
    pass


class EmbeddingShapeError(GraphError):
    pass


class ArchiveError(GraphError):
    pass


class CorruptionError(GraphError):
    """A store file is damaged; the message names it and `diffgraph graph check`."""


class UnreadableRecordError(CorruptionError):
    def __init__(self, table: str, record_id: str, reason: str) -> None:
        what = "expert" if table == "experts" else "reference prompt"
        super().__init__(
            f"the {what} record {record_id!r} is damaged ({reason}): remove it with "
            f"`diffgraph graph remove {record_id}` or quarantine it with "
            "`diffgraph graph check --repair`"
        )
        self.record_id = record_id
        self.reason = reason
