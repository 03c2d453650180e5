"""Errors of the generation backend; each names the thing, what was expected and the fix."""

from __future__ import annotations

from graph.errors import DiffGraphError


class GenerationError(DiffGraphError, ValueError):
    """A generation request or a base model that cannot be used as asked."""


class ModelLoadError(GenerationError):
    """A base model path that is missing, of an unknown kind, or lacks its configs."""
