"""``world_judge``: the small world's GenEval-style judge as a scorer.

Scores each image by the mean probability the judge gives to the attribute values its
prompt asks for (shape, colour, background, style; :mod:`tools.world.judge`). A prompt
that names nothing the judge knows scores 0. Only meaningful on the small world's images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from tools.scorers.base import Scorer


class WorldJudgeScorer(Scorer):
    metrics = ("world_judge",)

    def __init__(self, judge, device: str = "cpu") -> None:
        self.judge = judge.eval().to(device)
        self.device = device

    @classmethod
    def from_file(cls, path: Path, device: str = "cpu") -> WorldJudgeScorer:
        from tools.world.evaluate import load_world_judge

        return cls(load_world_judge(Path(path)), device)

    def _score(self, images: torch.Tensor, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        from tools.world.judge import alignment
        from tools.world.scene import IMAGE_SIZE

        images = images.float().to(self.device)
        if images.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            images = F.interpolate(images, size=(IMAGE_SIZE, IMAGE_SIZE), mode="area")
        scores, _ = alignment(self.judge, images, prompts)
        return {"world_judge": torch.nan_to_num(scores, nan=0.0)}
