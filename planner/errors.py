"""User-facing errors of the planner; each names the thing and the fix."""

from graph.errors import DiffGraphError


class PlannerError(DiffGraphError):
    """Bad input to planning or training."""


class CheckpointError(PlannerError):
    """A planner checkpoint that is missing, malformed or does not fit the graph."""
