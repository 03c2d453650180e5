"""Typed records of what platforms publish: models, versions, files, example images.

They describe upstream resources; the Graph Construction Agent turns them into graph
experts. Nothing here is a graph node.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from graph.records import SHA256_PATTERN, BaseFamily, ExpertKind

PlatformName = Literal["civitai", "huggingface", "local", "demo"]
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlatformFile(_Record):
    """One downloadable file of a version."""

    name: str
    size_bytes: int | None = Field(None, ge=0)
    sha256: str | None = None
    autov2: str | None = None
    format: str | None = Field(None, description="'safetensors', 'pickle', 'diffusers', 'other'")
    role: str | None = Field(None, description="platform file type: Model, Pruned Model, VAE ...")
    primary: bool = False
    download_url: str | None = None
    local_path: str | None = Field(None, description="set when the file is already on disk")

    @field_validator("sha256")
    @classmethod
    def _sha(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if not SHA256_PATTERN.match(value):
            raise ValueError(f"sha256 must be 64 hex digits, got {value!r}")
        return value

    @property
    def is_safetensors(self) -> bool:
        return self.format == "safetensors" or PurePosixPath(self.name).suffix == ".safetensors"


class PlatformImage(_Record):
    """An example image and the generation prompt shown with it (when published)."""

    url: str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None


class PlatformVersion(_Record):
    """One version of an upstream model: the unit that becomes one expert node."""

    id: str
    name: str = ""
    base_model: str | None = Field(None, description="the platform's base-model label")
    base: BaseFamily | None = Field(None, description="base family, when the label is known")
    trained_words: list[str] = Field(default_factory=list)
    description: str | None = Field(None, description="HTML (Civitai) or Markdown (model card)")
    published_at: datetime | None = None
    files: list[PlatformFile] = Field(default_factory=list)
    images: list[PlatformImage] = Field(default_factory=list)
    recommended_weight: float | None = Field(None, description="when the platform states one")

    def weight_file(self) -> PlatformFile | None:
        """The file holding the weights: the primary safetensors model file if any."""
        models = [f for f in self.files if f.role in (None, "Model", "Pruned Model")]
        for candidates in (
            [f for f in models if f.primary and f.is_safetensors],
            [f for f in models if f.is_safetensors],
            [f for f in models if f.primary],
            models,
        ):
            if candidates:
                return candidates[0]
        return None

    @property
    def example_prompts(self) -> list[str]:
        return [i.prompt for i in self.images if i.prompt]


class PlatformModel(_Record):
    """An upstream model (all its versions, newest first) as a platform lists it."""

    platform: PlatformName
    id: str
    name: str
    type: str = Field(description="the platform's type label: Checkpoint, LORA, LoCon ...")
    kind: ExpertKind | None = Field(None, description="None for types that are not experts")
    description: str | None = Field(None, description="HTML (Civitai) or Markdown (model card)")
    tags: list[str] = Field(default_factory=list)
    nsfw: bool = False
    creator: str | None = None
    license: dict[str, str | bool | list[str] | None] = Field(default_factory=dict)
    homepage_url: str | None = None
    versions: list[PlatformVersion] = Field(default_factory=list)
    demo: bool = Field(False, description="True for the local demo catalogue")

    @property
    def latest(self) -> PlatformVersion | None:
        return self.versions[0] if self.versions else None


class Skipped(_Record):
    """An item that was left out, and why (reported, never fatal)."""

    item: str
    reason: str


class ModelPage(_Record):
    """One page of a model listing."""

    models: list[PlatformModel]
    skipped: list[Skipped] = Field(default_factory=list)
    next_cursor: str | None = None


class DownloadedFile(_Record):
    """A verified weight file on local disk."""

    path: str
    sha256: str
    size_bytes: int
    verified: bool = Field(description="True when the platform's SHA-256 was checked")
    resumed: bool = Field(False, description="True when an interrupted transfer was resumed")


class PageText(_Record):
    """Readable text of a model's homepage (untrusted: pass it to an LLM only as data)."""

    url: str | None
    text: str
    origin: Literal["browser", "api-description", "none"]
    note: str | None = None
