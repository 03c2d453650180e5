"""The merge plan other packages build: which experts, with which coefficients, how.

A plan is a validated pydantic model, built from Python or read from a YAML/JSON file;
``recipe_hash`` keys the cache of merged results.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tools.weights.errors import MergeConfigError
from tools.weights.files import sha256_file
from tools.weights.methods import get_method, method_params, normalized

Normalize = Literal["softmax", "strength", "raw"]
# What weights a user writes mean: A1111's (a LoRA's strength, checkpoint shares).
USER_NORMALIZE: Normalize = "strength"
# Largest merge weight accepted (after normalising): beyond it, a typo or a bug.
MAX_WEIGHT = 20.0


class WeightedExpert(BaseModel):
    """One expert file and its merge coefficient."""

    model_config = ConfigDict(extra="forbid")

    path: Path
    coefficient: float
    name: str | None = None
    expert_id: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.expert_id or self.path.name


class MergePlan(BaseModel):
    """Checkpoints and LoRA-type experts with coefficients, a method and its parameters.

    ``normalize="softmax"`` (the paper; how the planner's coefficients are merged) turns
    each group's coefficients into softmax weights. ``"strength"`` is what users mean by
    weights they give themselves: a LoRA's coefficient is its strength, as in A1111's
    ``<lora:name:0.7>``, and checkpoint coefficients are shares of a weighted sum (scaled
    to add up to 1, as A1111's checkpoint merger). ``"raw"`` uses every coefficient as
    given. Plans built here default to ``softmax``; ``diffgraph merge`` and plan files
    that name no ``normalize`` use ``strength``. ``base`` is the
    reference for task-vector methods (TIES, DARE, task arithmetic) in file merges; when
    merging into loaded models the loaded weights are the base.
    """

    model_config = ConfigDict(extra="forbid")

    checkpoints: list[WeightedExpert] = Field(default_factory=list)
    loras: list[WeightedExpert] = Field(default_factory=list)
    method: str = "diffgraph"
    normalize: Normalize = "softmax"
    params: dict[str, Any] = Field(default_factory=dict)
    base: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> MergePlan:
        get_method(self.method)
        method_params(self.method, self.params)
        if not self.checkpoints and not self.loras:
            raise ValueError("a merge plan needs at least one checkpoint or LoRA")
        total = sum(e.coefficient for e in self.checkpoints)
        if self.normalize == "strength" and self.checkpoints and total <= 0:
            raise ValueError(
                f"checkpoint weights add up to {total:g}: as shares of a weighted sum they "
                "must add up to more than 0"
            )
        return self

    def check_weights(self) -> None:
        """Refuse a coefficient that is no finite number, or a merge weight beyond
        ±:data:`MAX_WEIGHT` (a typo, or checkpoint shares that nearly cancel)."""
        experts = [*self.checkpoints, *self.loras]
        for expert in experts:
            if not math.isfinite(expert.coefficient):
                raise MergeConfigError(
                    f"{expert.label}: weight {expert.coefficient} is not a finite number; "
                    "nothing was merged. Fix: give a number such as 0.7"
                )
        weights = [*self.checkpoint_weights(), *self.lora_weights()]
        for expert, weight in zip(experts, weights, strict=True):
            if abs(weight) > MAX_WEIGHT:
                raise MergeConfigError(
                    f"{expert.label}: weight {expert.coefficient:g} gives merge weight "
                    f"{weight:g} (normalize={self.normalize}), beyond ±{MAX_WEIGHT:g}; nothing "
                    f"was merged. Fix: use LoRA strengths within ±{MAX_WEIGHT:g} and checkpoint "
                    "weights that add up to clearly more than 0"
                )

    def checkpoint_weights(self) -> list[float]:
        coefficients = [e.coefficient for e in self.checkpoints]
        if self.normalize != "strength":
            return normalized(coefficients, self.normalize)
        total = sum(coefficients)
        return [c / total for c in coefficients]

    def lora_weights(self) -> list[float]:
        mode = "raw" if self.normalize == "strength" else self.normalize
        return normalized([e.coefficient for e in self.loras], mode)

    def recipe(self) -> dict[str, Any]:
        """Everything that determines the merged weights, with file hashes for paths."""
        return {
            "checkpoints": [[sha256_file(e.path), repr(e.coefficient)] for e in self.checkpoints],
            "loras": [[sha256_file(e.path), repr(e.coefficient)] for e in self.loras],
            "method": self.method,
            "normalize": self.normalize,
            "params": method_params(self.method, self.params).model_dump(mode="json"),
            "base": sha256_file(self.base) if self.base else None,
        }

    def recipe_hash(self) -> str:
        """Stable SHA-256 of :meth:`recipe` (expert hashes, coefficients, method, params)."""
        blob = json.dumps(self.recipe(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    @classmethod
    def from_file(cls, path: Path) -> MergePlan:
        """A plan from a YAML or JSON file; relative expert paths resolve from its folder."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise MergeConfigError(f"cannot read merge config {path}: {exc}") from exc
        try:
            if path.suffix.lower() in {".yaml", ".yml"}:
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError
            raise MergeConfigError(f"{path} is not valid YAML/JSON: {exc}") from exc
        if isinstance(data, dict):  # weights a user wrote: A1111's meaning unless named
            data = {"normalize": USER_NORMALIZE, **data}
        try:
            plan = cls.model_validate(data)
        except ValidationError as exc:
            raise MergeConfigError(f"invalid merge config {path}: {exc}") from exc
        return plan.resolved(path.parent)

    def resolved(self, folder: Path) -> MergePlan:
        """The plan with relative paths made relative to ``folder``."""

        def fix(p: Path) -> Path:
            return p if p.is_absolute() else folder / p

        return self.model_copy(
            update={
                "checkpoints": [
                    e.model_copy(update={"path": fix(e.path)}) for e in self.checkpoints
                ],
                "loras": [e.model_copy(update={"path": fix(e.path)}) for e in self.loras],
                "base": fix(self.base) if self.base else None,
            }
        )


def parse_weighted(spec: str) -> WeightedExpert:
    """``path/to/file.safetensors:0.7`` → a weighted expert (coefficient 1.0 when omitted)."""
    path, sep, value = spec.rpartition(":")
    if sep and path:
        try:
            return WeightedExpert(path=Path(path), coefficient=float(value))
        except ValueError:
            pass
    return WeightedExpert(path=Path(spec), coefficient=1.0)


def parse_param(spec: str) -> tuple[str, Any]:
    """``density=0.3`` → ``("density", 0.3)`` (values read as YAML scalars)."""
    import yaml

    key, sep, value = spec.partition("=")
    if not sep or not key:
        raise MergeConfigError(f"method parameter {spec!r} is not KEY=VALUE")
    return key.strip(), yaml.safe_load(value)


def plan_from_options(
    checkpoints: list[str],
    loras: list[str],
    method: str,
    normalize: str,
    params: list[str],
    base: Path | None = None,
) -> MergePlan:
    """A plan from command-line style options (``PATH:COEFFICIENT``, ``KEY=VALUE``);
    ``normalize`` is ``strength`` for what users type (see :class:`MergePlan`)."""
    try:
        return MergePlan(
            checkpoints=[parse_weighted(s) for s in checkpoints],
            loras=[parse_weighted(s) for s in loras],
            method=method,
            normalize=normalize,
            params=dict(parse_param(p) for p in params),
            base=base,
        )
    except ValidationError as exc:
        messages = "; ".join(e["msg"] for e in exc.errors())
        raise MergeConfigError(f"invalid merge request: {messages}") from exc
