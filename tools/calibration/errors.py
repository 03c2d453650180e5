"""Errors of node calibration; each names the thing, what was expected and the fix."""

from __future__ import annotations

from graph.errors import DiffGraphError


class CalibrationError(DiffGraphError, ValueError):
    """A calibration run that cannot start as asked."""
