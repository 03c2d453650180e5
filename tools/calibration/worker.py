"""The process-side of calibration: a loaded pipeline and scorers that run expert tasks.

A :class:`WorkerSpec` says how to build a worker (it is sent to Ray actors); a
:class:`Worker` applies each task's expert once, generates every pending prompt's images
in batches, scores them and averages per prompt.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict

from tools.calibration.tasks import ExpertResult, ExpertTask, SamplingSpec
from tools.generation.triggers import TriggerMode

logger = logging.getLogger(__name__)


GENERATOR_FIELDS = (
    "device",
    "dtype",
    "config_dir",
    "allow_pickle",
    "trigger_mode",
    "max_batch",
    "noise_device",
)


class WorkerSpec(BaseModel):
    """Everything a worker process needs to load its pipeline and scorers."""

    model_config = ConfigDict(extra="forbid")

    base_model: Path
    device: str = "auto"
    dtype: str = "float32"
    config_dir: Path | None = None
    allow_pickle: bool = False
    trigger_mode: TriggerMode = "prepend"
    max_batch: int = 8
    noise_device: Literal["cpu", "pipeline"] = "cpu"
    scorers: dict  # tools.settings.ScorerSettings as a dict
    sampling: SamplingSpec
    threads: int | None = None  # torch threads in the worker (None: torch's default)

    @classmethod
    def from_settings(cls, settings, sampling: SamplingSpec, base_model: Path | None = None):
        from tools.calibration.errors import CalibrationError

        base = base_model or settings.base_model
        if base is None:
            raise CalibrationError(
                "no base model to calibrate with. Fix: set base_model (DIFFGRAPH_BASE_MODEL) "
                "or pass --base-model"
            )
        from tools.generation.generator import generator_options

        return cls(
            base_model=base,
            scorers=settings.scorers.model_dump(),
            sampling=sampling,
            **generator_options(settings),
        )


class Worker:
    """A loaded base pipeline and scorer suite."""

    def __init__(self, spec: WorkerSpec) -> None:
        from tools.generation.generator import Generator
        from tools.generation.loading import resolve_device
        from tools.scorers.load import load_scorers
        from tools.settings import ScorerSettings

        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.spec = spec
        options = spec.model_dump(include=set(GENERATOR_FIELDS))
        self.generator = Generator.from_path(spec.base_model, **options)
        device = resolve_device(spec.device)
        self.scorers = load_scorers(
            ScorerSettings(**spec.scorers), device=device, allow_pickle=spec.allow_pickle
        )

    @property
    def demo(self) -> bool:
        return self.generator.demo or self.scorers.demo

    def run(self, task: ExpertTask) -> ExpertResult:
        """Scores of every prompt of ``task``; any failure is returned, not raised."""
        start = time.perf_counter()
        try:
            scores, samples, images = self._run(task)
        except Exception as exc:  # one expert's failure must not stop the run
            from graph.errors import DiffGraphError

            logger.warning("calibration of %s failed: %s", task.expert_id, exc)
            return ExpertResult(
                expert_id=task.expert_id,
                error=f"{type(exc).__name__}: {exc}",
                unusable=isinstance(exc, DiffGraphError),
                seconds=time.perf_counter() - start,
            )
        return ExpertResult(
            expert_id=task.expert_id,
            scores=scores,
            samples=samples,
            images=images,
            seconds=time.perf_counter() - start,
        )

    def _run(self, task: ExpertTask) -> tuple[dict[str, dict[str, float]], dict[str, bytes], int]:
        """Scores per prompt, the first seed's image per prompt (PNG) and images made."""
        from tools.calibration.thumbnails import thumbnail_png
        from tools.generation.request import GenerationRequest

        sampling = self.spec.sampling
        n = sampling.images_per_prompt
        per_call = max(1, self.spec.max_batch // n)
        scores: dict[str, dict[str, float]] = {}
        samples: dict[str, bytes] = {}
        with self.generator.merged(task.merge_plan()):
            for start in range(0, len(task.prompts), per_call):
                chunk = task.prompts[start : start + per_call]
                request = GenerationRequest(
                    prompts=[text for _, text in chunk],
                    negative_prompt=sampling.negative_prompt,
                    images_per_prompt=n,
                    steps=sampling.steps,
                    guidance=sampling.guidance,
                    width=sampling.size,
                    height=sampling.size,
                    seed=sampling.seed,
                )
                result = self.generator.generate_merged(request, task.trigger_words)
                # score against the reference prompt, not the trigger-word-augmented one
                texts = [text for _, text in chunk for _ in range(n)]
                metrics = self.scorers.score(result.images, texts)
                for i, (ref_id, _) in enumerate(chunk):
                    scores[ref_id] = {
                        name: float(value[i * n : (i + 1) * n].mean())
                        for name, value in metrics.items()
                    }
                    samples[ref_id] = thumbnail_png(result.images[i * n])
        return scores, samples, len(task.prompts) * n
