"""Errors of the scorers; each names the metric, the file expected and where to put it."""

from __future__ import annotations

from pathlib import Path

from graph.errors import DiffGraphError


class ScorerError(DiffGraphError, ValueError):
    """A scorer that cannot be built or used as asked."""


class MissingWeightsError(ScorerError):
    """A scorer's weight file is not on this machine (nothing is downloaded)."""

    def __init__(self, metric: str, expected: str, setting: str, looked: Path | str | None) -> None:
        where = f"looked in {looked}; " if looked else ""
        super().__init__(
            f"metric {metric!r} needs {expected}; {where}none found offline. Fix: put it on "
            f"this machine and set scorers.{setting} (DIFFGRAPH_SCORERS__{setting.upper()}) "
            "to its path, or place the repository in the Hugging Face cache "
            "(see docs/SCORERS.md)"
        )
        self.metric = metric
