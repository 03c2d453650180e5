"""A generation request, validated before any model work starts."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from graph.records import BaseFamily

# Seeds a user may give: image i (benchmark prompt i) uses seed + i, a signed 64-bit integer.
MAX_SEED = 2**63 - 2**16
# Image sides a pipeline is asked for (each family also needs a multiple of its stride).
MIN_SIDE, MAX_SIDE = 16, 4096
# Default image side and the multiple every side must be, per family (VAE / patch stride).
DEFAULT_SIDE = {BaseFamily.SD15: 512, BaseFamily.SDXL: 1024, BaseFamily.FLUX1: 1024}
SIDE_MULTIPLE = {BaseFamily.SD15: 8, BaseFamily.SDXL: 8, BaseFamily.FLUX1: 16}


class GenerationRequest(BaseModel):
    """Prompts and sampling settings. Image ``i`` of a prompt uses seed ``seed + i``.

    ``width`` / ``height`` default to the base family's native size.
    """

    model_config = ConfigDict(extra="forbid")

    prompts: list[str] = Field(min_length=1, max_length=256)
    negative_prompt: str = ""
    images_per_prompt: int = Field(1, ge=1, le=64)
    steps: int = Field(30, ge=1, le=500)
    guidance: float = Field(7.5, ge=0.0, le=50.0)
    width: int | None = Field(None, ge=MIN_SIDE, le=MAX_SIDE)
    height: int | None = Field(None, ge=MIN_SIDE, le=MAX_SIDE)
    seed: int = Field(0, ge=0, lt=2**63 - 64)

    @field_validator("prompts")
    @classmethod
    def _non_blank(cls, prompts: list[str]) -> list[str]:
        for i, prompt in enumerate(prompts):
            if not prompt.strip():
                raise ValueError(f"prompt {i} is empty: give a non-blank prompt")
        return [p.strip() for p in prompts]

    @model_validator(mode="after")
    def _square_default(self) -> GenerationRequest:
        if (self.width is None) != (self.height is None):
            side = self.width or self.height
            self.width = self.height = side
        return self

    def size(self, family: BaseFamily) -> tuple[int, int]:
        """(width, height) for ``family``; raises when a side is not a multiple of its stride."""
        width = self.width or DEFAULT_SIDE[family]
        height = self.height or DEFAULT_SIDE[family]
        multiple = SIDE_MULTIPLE[family]
        if width % multiple or height % multiple:
            from tools.generation.errors import GenerationError

            fit_w, fit_h = (max(multiple, side // multiple * multiple) for side in (width, height))
            raise GenerationError(
                f"image size {width}x{height} is not valid for {family.value}: each side must "
                f"be a multiple of {multiple}. Fix: use e.g. {fit_w}x{fit_h}"
            )
        return width, height

    def seeds(self) -> list[int]:
        """The seed of each image of one prompt."""
        return [self.seed + i for i in range(self.images_per_prompt)]
