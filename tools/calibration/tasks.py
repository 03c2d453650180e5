"""What one calibration task is (one expert, its pending prompts) and what comes back."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from graph.records import BaseFamily, Expert, ExpertKind
from tools.calibration.errors import CalibrationError


class SamplingSpec(BaseModel):
    """How calibration images are made: the same for every expert, so scores compare."""

    model_config = ConfigDict(extra="forbid")

    images_per_prompt: int = Field(2, ge=1, le=64)
    seed: int = Field(0, ge=0)
    steps: int = Field(25, ge=1, le=500)
    guidance: float = Field(7.5, ge=0.0, le=50.0)
    size: int | None = Field(None, ge=16, le=4096)
    negative_prompt: str = ""

    @classmethod
    def from_settings(cls, settings) -> SamplingSpec:
        """The sampling of ``settings.calibration`` (negative prompt from ``generation``)."""
        c = settings.calibration
        return cls(
            images_per_prompt=c.images_per_prompt,
            seed=c.seed,
            steps=c.steps,
            guidance=c.guidance,
            size=c.size,
            negative_prompt=settings.generation.negative_prompt,
        )


class ExpertTask(BaseModel):
    """Generate and score every pending reference prompt with one expert's weights."""

    model_config = ConfigDict(extra="forbid")

    expert_id: str
    kind: ExpertKind
    path: Path
    coefficient: float = 1.0
    trigger_words: list[str] = Field(default_factory=list)
    prompts: list[tuple[str, str]]  # (reference-prompt id, text)

    @classmethod
    def for_expert(cls, expert: Expert, prompts: list[tuple[str, str]], base: BaseFamily):
        """The task of ``expert``; raises when it cannot be calibrated on ``base``."""
        if expert.base != base:
            raise CalibrationError(
                f"expert {expert.id} is for {expert.base.value}, the base model is {base.value}: "
                "calibrate it with a base model of its family"
            )
        if expert.file is None or not expert.file.path or not Path(expert.file.path).exists():
            where = expert.file.path if expert.file and expert.file.path else "no path recorded"
            raise CalibrationError(
                f"expert {expert.id} has no local weights file ({where}): download it first"
            )
        return cls(
            expert_id=expert.id,
            kind=expert.kind,
            path=Path(expert.file.path),
            coefficient=expert.recommended_weight or 1.0,
            trigger_words=expert.trigger_words,
            prompts=prompts,
        )

    def merge_plan(self):
        """The merge plan that puts this expert's weights into the base pipeline."""
        from tools.weights.plan import MergePlan, WeightedExpert

        weighted = [
            WeightedExpert(path=self.path, coefficient=self.coefficient, expert_id=self.expert_id)
        ]
        if self.kind == ExpertKind.CKPT:
            return MergePlan(checkpoints=weighted, normalize="softmax")
        return MergePlan(loras=weighted, normalize="raw")


class ExpertResult(BaseModel):
    """Mean score per metric for each reference prompt of a task, or why it failed;
    ``samples``: the first seed's image of each prompt as a small PNG."""

    expert_id: str
    scores: dict[str, dict[str, float]] = Field(default_factory=dict)  # ref id -> metric -> mean
    samples: dict[str, bytes] = Field(default_factory=dict)  # ref id -> PNG thumbnail
    error: str | None = None
    unusable: bool = False  # the error is the expert's own (it does not fit the base, ...)
    images: int = 0
    seconds: float = 0.0
