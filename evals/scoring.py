"""The benchmark's scorers: every requested metric whose weights are on this machine.

A metric without local weights is left out with the reason (nothing is downloaded); the
others still score. ``demo_dir`` swaps in tiny random CLIP scorers (``clip_score`` and
``aesthetic`` only), which mean nothing and are labelled demo.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tools.scorers.suite import ScorerSuite
    from tools.settings import Settings

log = logging.getLogger(__name__)

DEMO_METRICS = ("clip_score", "aesthetic")


@dataclass
class Scoring:
    """The loaded scorers, the metrics they give and the metrics left out (with why)."""

    suite: ScorerSuite | None
    metrics: list[str]
    unavailable: dict[str, str] = field(default_factory=dict)
    demo: bool = False

    def score_files(self, paths: Sequence[Path], prompt: str) -> list[dict[str, float]]:
        """One ``{metric: score}`` per image file, scored against ``prompt``."""
        if self.suite is None or not paths:
            return [{} for _ in paths]
        images = read_images(paths)
        scores = self.suite.score(images, [prompt] * len(paths))
        return [{m: float(scores[m][i]) for m in self.metrics} for i in range(len(paths))]


def load_scoring(
    settings: Settings, metrics: Sequence[str] | None = None, demo_dir: Path | None = None
) -> Scoring:
    """Scorers of ``metrics`` (default ``scorers.metrics``) that can be built offline."""
    from tools.generation.loading import resolve_device
    from tools.scorers.errors import MissingWeightsError
    from tools.scorers.load import METRICS, check_weights, load_scorers

    wanted = list(dict.fromkeys(metrics or settings.scorers.metrics))
    unknown = sorted(set(wanted) - set(METRICS))
    if unknown:
        from evals.errors import BenchmarkError

        raise BenchmarkError(f"unknown metric(s) {unknown}: expected some of {', '.join(METRICS)}")
    scorer_settings = settings.scorers
    unavailable: dict[str, str] = {}
    if demo_dir is not None:
        from tools.tiny import save_tiny_scorer_weights

        scorer_settings = scorer_settings.model_copy(update=save_tiny_scorer_weights(demo_dir))
        for metric in wanted:
            if metric not in DEMO_METRICS:
                unavailable[metric] = (
                    "no demo scorer exists for it (--demo-scorers gives clip_score and "
                    "aesthetic only)"
                )
    available = []
    for metric in wanted:
        if metric in unavailable:
            continue
        try:
            check_weights(scorer_settings, metric)
            available.append(metric)
        except MissingWeightsError as exc:
            unavailable[metric] = str(exc)
    while available:
        try:
            suite = load_scorers(
                scorer_settings, available, resolve_device(settings.device), settings.allow_pickle
            )
        except MissingWeightsError as exc:  # a file inside a located folder is missing
            unavailable[exc.metric] = str(exc)
            available.remove(exc.metric)
            continue
        return Scoring(suite, available, unavailable, suite.demo)
    log.warning("no scorer available for %s", ", ".join(unavailable))
    return Scoring(None, [], unavailable)


def read_images(paths: Sequence[Path]):
    """Image files as float ``[N, 3, H, W]`` in [0, 1] (what the gallery shows)."""
    import numpy as np
    import torch
    from PIL import Image

    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
