"""Errors of the end-to-end pipeline."""

from graph.errors import DiffGraphError


class PipelineError(DiffGraphError):
    """The pipeline cannot run as asked (wrong family, deprecated expert, nothing to do)."""


class WeightsChangedError(PipelineError):
    """An expert's file whose SHA-256 is not the one the graph registered."""
