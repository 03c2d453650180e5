"""The merge recipe written beside every generated image."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field


class RecipeExpert(BaseModel):
    """One merged expert: planner coefficient and the weight it got in the merge."""

    expert_id: str | None = None
    name: str
    kind: Literal["ckpt", "peft"]
    coefficient: float = Field(description="the planner's coefficient (Beta mean)")
    merge_weight: float = Field(description="softmax within its kind (or raw), as applied")
    trigger_words: list[str] = Field(default_factory=list)
    path: str | None = None
    sha256: str | None = None
    addnet_hash: str | None = Field(
        None, description="SHA-256 of the tensor data (A1111's LoRA hash, Civitai's AutoV3)"
    )


class Recipe(BaseModel):
    """Everything needed to reproduce (or re-create elsewhere) one generation."""

    prompt: str
    final_prompt: str = Field(description="the prompt given to the model (trigger words added)")
    negative_prompt: str = ""
    seed: int
    steps: int
    guidance: float
    sampler: str | None = Field(None, description="A1111 name of the scheduler that ran")
    schedule_type: str | None = Field(None, description="A1111 schedule type (Karras ...)")
    width: int
    height: int
    family: str
    noise_device: str | None = Field(
        None, description="device whose generator drew the seed's noise (cpu: any hardware)"
    )
    base_model: str | None = Field(None, description="base checkpoint file when no ckpt merged")
    base_model_sha256: str | None = None
    checkpoints: list[RecipeExpert] = Field(default_factory=list)
    loras: list[RecipeExpert] = Field(default_factory=list)
    method: str = "diffgraph"
    method_params: dict[str, Any] = Field(default_factory=dict)
    normalize: Literal["softmax", "raw"] = "softmax"
    fusion: Literal["merge", "gated"] = "merge"
    planner: str
    selection_mode: str
    demo: bool = False
    notes: list[str] = Field(default_factory=list, description="what ran on demo backends")
    images: list[str] = Field(default_factory=list)
    run_id: str | None = None
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    def checkpoint_name(self) -> str:
        """The file name a UI would load as the model (merged file or single checkpoint)."""
        if len(self.checkpoints) == 1 and self.checkpoints[0].path:
            return Path(self.checkpoints[0].path).name
        if self.base_model and not self.checkpoints:
            return Path(self.base_model).name
        return "diffgraph-merged.safetensors"

    def checkpoint_sha256(self) -> str | None:
        """The SHA-256 of :meth:`checkpoint_name`'s file, when one file is loaded as is."""
        if len(self.checkpoints) == 1:
            return self.checkpoints[0].sha256
        if not self.checkpoints:
            return self.base_model_sha256
        return None
