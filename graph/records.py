"""Typed node and edge records of the universal graph (paper §3.1)."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from enum import Enum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,199}$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
# LoRA strengths in use (negative: slider LoRAs); a prompt's <lora:x:w> tags too.
WEIGHT_RANGE = (-5.0, 5.0)


class ExpertKind(str, Enum):
    """A full checkpoint or a parameter-efficient adapter (LoRA and relatives)."""

    CKPT = "ckpt"
    PEFT = "peft"


class BaseFamily(str, Enum):
    """Base-model families whose experts can be merged with each other."""

    SD15 = "sd15"
    SDXL = "sdxl"
    FLUX1 = "flux1"


class ExpertStatus(str, Enum):
    ACTIVE = "active"
    DEPRECATED = "deprecated"


DescriptionOrigin = Literal["llm", "no-llm", "manual", "demo"]


def _check_id(value: str, what: str) -> str:
    if not ID_PATTERN.match(value):
        raise ValueError(
            f"{what} {value!r} is not a valid id: expected 1-200 characters of letters, digits "
            "and ._:@/+- starting with a letter or digit"
        )
    return value


class Source(BaseModel):
    """Where an expert was found."""

    model_config = ConfigDict(extra="forbid")

    platform: Literal["civitai", "huggingface", "local", "demo", "manual"] = "manual"
    url: str | None = None
    model_id: str | None = None
    version_id: str | None = None


class WeightFile(BaseModel):
    """The expert's weights on local disk (once downloaded)."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    sha256: str | None = None
    format: str | None = None
    size_bytes: int | None = Field(None, ge=0)

    @field_validator("sha256")
    @classmethod
    def _sha(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.lower()
        if not SHA256_PATTERN.match(value):
            raise ValueError(f"sha256 must be 64 hex digits, got {value!r}")
        return value


class Expert(BaseModel):
    """An expert node: one version of a checkpoint or adapter.

    The node feature (384-d embedding of ``description``) is stored beside the record,
    not inside it.
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    kind: ExpertKind
    base: BaseFamily
    name: str = Field(min_length=1, max_length=300)
    description: str = Field("", max_length=4000)
    description_origin: DescriptionOrigin = "manual"
    trigger_words: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    subjects: list[str] = Field(default_factory=list)
    styles: list[str] = Field(default_factory=list)
    visual_attributes: list[str] = Field(default_factory=list)
    example_prompts: list[str] = Field(default_factory=list)
    recommended_weight: float | None = None
    source: Source = Field(default_factory=Source)
    file: WeightFile | None = None
    license: dict[str, str | bool | list[str] | None] = Field(default_factory=dict)
    published: date | None = None
    status: ExpertStatus = ExpertStatus.ACTIVE
    lineage: str | None = Field(
        None, description="shared by every version of the same upstream model"
    )
    supersedes: str | None = None
    superseded_by: str | None = None
    status_reason: str | None = None
    demo: bool = False
    updated_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _check_id(value, "expert id")

    @property
    def is_active(self) -> bool:
        return self.status is ExpertStatus.ACTIVE


Word = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Phrase = Annotated[str, StringConstraints(min_length=1, max_length=300)]
ExamplePrompt = Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class ExpertInput(Expert):
    """An expert record a user hands in (``graph add-expert``), with bounds on every field
    that a stored record, written by DiffGraph itself, need not repeat."""

    trigger_words: list[Word] = Field(default_factory=list, max_length=64)
    tags: list[Word] = Field(default_factory=list, max_length=128)
    subjects: list[Phrase] = Field(default_factory=list, max_length=64)
    styles: list[Phrase] = Field(default_factory=list, max_length=64)
    visual_attributes: list[Phrase] = Field(default_factory=list, max_length=64)
    example_prompts: list[ExamplePrompt] = Field(default_factory=list, max_length=32)
    recommended_weight: float | None = Field(
        None, ge=WEIGHT_RANGE[0], le=WEIGHT_RANGE[1], allow_inf_nan=False
    )
    license: dict[Word, str | bool | list[Word] | None] = Field(default_factory=dict, max_length=32)

    @field_validator("id", "lineage", "supersedes", "superseded_by")
    @classmethod
    def _no_path_steps(cls, value: str | None) -> str | None:
        if value is not None and {".", ".."} & set(value.split("/")):
            raise ValueError(
                f"id {value!r} has a '.' or '..' path part: use letters, digits and ._:@+- "
                "between slashes"
            )
        return value


class ReferencePrompt(BaseModel):
    """A reference-prompt node: experts are calibrated by generating images for it."""

    model_config = ConfigDict(extra="forbid")

    id: str
    text: str = Field(min_length=1, max_length=2000)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _check_id(value, "reference prompt id")


class Calibration(BaseModel):
    """A calibration edge: scores of images an expert made for one reference prompt."""

    model_config = ConfigDict(extra="forbid")

    expert_id: str
    ref_id: str
    scores: dict[str, float] = Field(min_length=1)

    @field_validator("scores")
    @classmethod
    def _finite(cls, value: dict[str, float]) -> dict[str, float]:
        for name, score in value.items():
            if not re.match(r"^[a-z][a-z0-9_]{0,63}$", name):
                raise ValueError(f"metric name {name!r}: expected lowercase snake_case")
            if score != score or score in (float("inf"), float("-inf")):
                raise ValueError(f"score for metric {name!r} is not finite: {score}")
        return value
