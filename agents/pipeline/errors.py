"""Errors of the end-to-end pipeline."""

from graph.errors import DiffGraphError


class PipelineError(DiffGraphError):
    """The pipeline cannot run as asked (wrong family, deprecated expert, nothing to do)."""
