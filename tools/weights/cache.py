"""Merged checkpoints on disk, keyed by the plan's recipe hash."""

from __future__ import annotations

import logging
from pathlib import Path

from tools.weights.plan import MergePlan
from tools.weights.stream import MergeReport, merge_to_file

logger = logging.getLogger(__name__)


class MergeCache:
    """``<folder>/<recipe_hash>[-<dtype>].safetensors``: a recipe is merged once, then reused."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path(self, plan: MergePlan, dtype: str | None = None) -> Path:
        suffix = f"-{dtype}" if dtype else ""
        return self.folder / f"{plan.recipe_hash()}{suffix}.safetensors"

    def get(self, plan: MergePlan, dtype: str | None = None) -> Path | None:
        """The cached merge of ``plan``, or None."""
        path = self.path(plan, dtype)
        return path if path.is_file() else None

    def merge(
        self, plan: MergePlan, dtype: str | None = None, allow_pickle: bool = False
    ) -> tuple[Path, MergeReport | None]:
        """The merged file of ``plan``; the report is None on a cache hit."""
        path = self.path(plan, dtype)
        if path.is_file():
            logger.debug("merge cache hit %s", path.name)
            return path, None
        return path, merge_to_file(plan, path, dtype=dtype, allow_pickle=allow_pickle)
