"""Progress reports and resumable training state of the world build."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch

Progress = Callable[[str, int, int], None]  # (task, done, total)


def no_progress(task: str, done: int, total: int) -> None:
    """The default: report nothing."""


class Resume:
    """Periodic training snapshots of one stage in ``folder`` (written atomically).

    A snapshot holds the step, the trainable tensors and the optimizer state; loading
    uses ``weights_only=True`` (the files are the build's own, still never unpickled).
    """

    def __init__(self, folder: Path, every: int = 100) -> None:
        self.folder = Path(folder)
        self.every = every

    @property
    def path(self) -> Path:
        return self.folder / "snapshot.pt"

    def load(self) -> dict | None:
        if not self.path.is_file():
            return None
        return torch.load(self.path, weights_only=True)

    def save(self, step: int, state: dict) -> None:
        if step % self.every:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"step": step, **state}, tmp)
        tmp.replace(self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def write_json(path: Path, data: dict) -> None:
    """``data`` as JSON at ``path``, atomically."""
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)
