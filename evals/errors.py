"""Errors of the evaluations; each says what was expected, what was got and the fix."""

from __future__ import annotations

from graph.errors import DiffGraphError


class BenchmarkError(DiffGraphError):
    """A benchmark that cannot run as asked (unknown row, bad expert set, bad checkpoint)."""
