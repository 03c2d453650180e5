"""Validated configurations of the AutoLoRA models, stored inside their checkpoints.

A checkpoint holds its architecture config (``EncoderConfig`` / ``FusionConfig``) and a
record of how it was trained (``TrainingRecord``), so that a loaded model rebuilds
exactly what was trained and says on what data.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from graph.records import BaseFamily


class LayerType(BaseModel):
    """One kind of adapted layer: its learned probe (``in_dim``) and token projection
    (``out_dim`` → the encoder width). ``key``: ``<component>.<role>:<out>x<in>``."""

    model_config = ConfigDict(extra="forbid")

    key: str
    in_dim: int = Field(ge=1)
    out_dim: int = Field(ge=1)


class EncoderConfig(BaseModel):
    """Architecture of :class:`tools.autolora.encoder.WeightEncoder`.

    ``layer_types`` and ``slots`` (module names with their own position embedding) are
    the vocabulary read from the training LoRAs; layers of other types are skipped when
    a new LoRA is embedded, other module names share the unknown slot.
    """

    model_config = ConfigDict(extra="forbid")

    d_model: int = Field(256, ge=4, description="token width inside the encoder")
    layers: int = Field(2, ge=1, le=24, description="transformer encoder layers")
    heads: int = Field(4, ge=1, le=64)
    ff_mult: int = Field(2, ge=1, le=8, description="feed-forward width / d_model")
    embed_dim: int = Field(384, ge=1, description="output width = the text encoder's")
    text_model: str = Field("all-MiniLM-L6-v2", description="frozen text encoder aligned to")
    init_temperature: float = Field(0.07, gt=0, le=1)
    layer_types: list[LayerType] = Field(default_factory=list)
    slots: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> EncoderConfig:
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} must be a multiple of heads {self.heads}")
        keys = [t.key for t in self.layer_types]
        if len(set(keys)) != len(keys):
            raise ValueError("layer type keys repeat")
        return self


class TrainingRecord(BaseModel):
    """How a checkpoint was trained: data, steps, losses, and whether it is demo material."""

    model_config = ConfigDict(extra="allow")

    steps: int = 0
    loras: list[str] = Field(default_factory=list, description="ids of the training LoRAs")
    data: str = Field("", description="where the training pairs came from")
    demo: bool = Field(False, description="trained on demo material (tiny or synthetic)")
    first_loss: float | None = None
    last_loss: float | None = None
    settings: dict = Field(default_factory=dict)


class FusionConfig(BaseModel):
    """The gate bank of the fine-grained gated fusion: one gate per adapted layer.

    ``layers`` maps canonical module names to their output width. ``global_rank`` is the
    rank of the global LoRA branch (the truncated SVD of the summed deltas; 0: none).
    """

    model_config = ConfigDict(extra="forbid")

    family: BaseFamily = BaseFamily.SD15
    global_rank: int = Field(4, ge=0, le=256)
    layers: dict[str, int] = Field(default_factory=dict)
    init_scale: float = Field(
        2.0, description="initial fusion scale; with gates at 0.5 the start is the plain sum"
    )
    eps: float = Field(1e-5, gt=0, description="layer-norm epsilon of the gate inputs")


class EncoderTrainConfig(BaseModel):
    """Knobs of the contrastive encoder training."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(500, ge=1)
    batch_size: int = Field(32, ge=2)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    seed: int = 0


class FusionTrainConfig(BaseModel):
    """Knobs of the interference-resistant gate training."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(200, ge=1)
    batch_size: int = Field(2, ge=1, description="image-caption pairs per step")
    lr: float = Field(1e-3, gt=0)
    grad_clip: float = Field(1.0, gt=0)
    seed: int = 0
