"""Images from a loaded pipeline, with a merge plan applied in place and undone after.

Consecutive requests with different experts reuse the loaded pipeline: the weights
toolkit's ``apply_merge`` saves the original tensors and ``restore`` puts them back.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from graph.records import BaseFamily
from tools.generation.errors import GenerationError
from tools.generation.loading import MERGE_COMPONENTS, LoadedPipeline, load_pipeline
from tools.generation.long_prompts import group_by_windows, long_prompt_embeds, needs_windows
from tools.generation.request import GenerationRequest
from tools.generation.triggers import TriggerMode, with_trigger_words

logger = logging.getLogger(__name__)

NoiseDevice = Literal["cpu", "pipeline"]


@dataclass
class GenerationResult:
    """Images in prompt-major order: image ``p * n + i`` is prompt ``p``, seed ``seeds[i]``.

    ``images``: float32 ``[N, 3, H, W]`` in [0, 1] on the CPU. ``prompts``: the prompt
    each image was made from (trigger words added). ``demo``: the pipeline has tiny random
    weights, so the images mean nothing.
    """

    images: torch.Tensor
    prompts: list[str]
    seeds: list[int]
    demo: bool


def generator_options(settings) -> dict:
    """The :meth:`Generator.from_path` options that ``settings`` (tools.settings) give."""
    return {
        "device": settings.device,
        "dtype": settings.dtype,
        "config_dir": settings.generation.config_dir,
        "allow_pickle": settings.allow_pickle,
        "trigger_mode": settings.generation.trigger_words,
        "max_batch": settings.generation.max_batch,
        "noise_device": settings.generation.noise_device,
    }


class Generator:
    """Generates images with one loaded pipeline; merge plans are applied per request.

    ``noise_device="cpu"`` (default) draws each seed's initial noise with a CPU generator,
    as diffusers advises for reproducibility: a seed gives the same noise on any hardware.
    ``"pipeline"`` draws it on the pipeline's device (CUDA's generator differs from CPU's).
    """

    def __init__(
        self,
        loaded: LoadedPipeline,
        *,
        trigger_mode: TriggerMode = "prepend",
        max_batch: int = 8,
        allow_pickle: bool = False,
        noise_device: NoiseDevice = "cpu",
    ) -> None:
        self.loaded = loaded
        self.trigger_mode = trigger_mode
        self.max_batch = max_batch
        self.allow_pickle = allow_pickle
        self.noise_setting = noise_device
        self._on_step: Callable[[int, int], None] | None = None

    @classmethod
    def from_path(
        cls,
        path: Path,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        config_dir: Path | None = None,
        allow_pickle: bool = False,
        trigger_mode: TriggerMode = "prepend",
        max_batch: int = 8,
        noise_device: NoiseDevice = "cpu",
    ) -> Generator:
        """Load ``path`` (diffusers folder or single file, see :func:`load_pipeline`)."""
        loaded = load_pipeline(
            path, device=device, dtype=dtype, config_dir=config_dir, allow_pickle=allow_pickle
        )
        return cls(
            loaded,
            trigger_mode=trigger_mode,
            max_batch=max_batch,
            allow_pickle=allow_pickle,
            noise_device=noise_device,
        )

    @classmethod
    def from_settings(cls, settings, path: Path | None = None) -> Generator:
        """The generator of ``settings.base_model`` (or ``path``) with the settings' options."""
        path = path or settings.base_model
        if path is None:
            raise GenerationError(
                "no base model configured. Fix: set base_model in diffgraph.toml or "
                "DIFFGRAPH_BASE_MODEL to a single-file checkpoint or a diffusers folder"
            )
        return cls.from_path(path, **generator_options(settings))

    @property
    def pipe(self):
        return self.loaded.pipe

    @property
    def family(self) -> BaseFamily:
        return self.loaded.family

    @property
    def demo(self) -> bool:
        return self.loaded.demo

    @property
    def device(self) -> torch.device:
        return self.pipe.device

    @property
    def noise_device(self) -> str:
        """The device the initial noise is drawn on (``cpu``, ``cuda`` …; recorded in recipes)."""
        if self.noise_setting == "cpu" or self.device.type == "mps":
            return "cpu"
        return self.device.type

    @property
    def sampler(self) -> tuple[str, str | None]:
        """The A1111 ``(sampler, schedule type)`` of the pipeline's scheduler."""
        from tools.generation.samplers import a1111_sampler

        return a1111_sampler(self.pipe.scheduler)

    def components(self) -> dict[str, torch.nn.Module]:
        """The modules a merge plan changes (``unet``, ``text_encoder`` …)."""
        found = {}
        for name in MERGE_COMPONENTS[self.family]:
            module = getattr(self.pipe, name, None)
            if module is not None:
                found[name] = module
        return found

    @contextlib.contextmanager
    def merged(self, plan=None) -> Iterator[None]:
        """Within the block the pipeline carries ``plan``'s weights (a MergePlan, or None)."""
        if plan is None:
            yield
            return
        from tools.weights.apply import apply_merge

        with apply_merge(
            self.components(), plan, allow_pickle=self.allow_pickle, family=self.family
        ):
            yield

    @contextlib.contextmanager
    def observing(self, on_step: Callable[[int, int], None]) -> Iterator[None]:
        """Within the block ``on_step(step, steps)`` runs after every denoising step; an
        exception it raises stops the generation (how the web UI shows progress and cancels)."""
        previous, self._on_step = self._on_step, on_step
        try:
            yield
        finally:
            self._on_step = previous

    def generate(
        self,
        request: GenerationRequest,
        plan=None,
        trigger_words: Sequence[str] = (),
    ) -> GenerationResult:
        """Images for every prompt of ``request``; ``plan`` is applied for this call only."""
        self.check(request)
        with self.merged(plan):
            return self.generate_merged(request, trigger_words)

    def check(self, request: GenerationRequest) -> None:
        """Reject what this pipeline cannot do before any work starts."""
        request.size(self.family)
        if self.family == BaseFamily.FLUX1 and request.negative_prompt:
            raise GenerationError(
                "FLUX.1 pipelines do not use negative prompts. Fix: leave negative_prompt empty"
            )

    def generate_merged(
        self, request: GenerationRequest, trigger_words: Sequence[str] = ()
    ) -> GenerationResult:
        """Like :meth:`generate` with whatever weights the pipeline holds now."""
        self.check(request)
        width, height = request.size(self.family)
        prompts = [with_trigger_words(p, trigger_words, self.trigger_mode) for p in request.prompts]
        per_call = max(1, self.max_batch // request.images_per_prompt)
        images = []
        for start in range(0, len(prompts), per_call):
            chunk = prompts[start : start + per_call]
            images.append(self._call(request, chunk, width, height))
        n = request.images_per_prompt
        return GenerationResult(
            images=torch.cat(images),
            prompts=[p for p in prompts for _ in range(n)],
            seeds=request.seeds() * len(prompts),
            demo=self.demo,
        )

    def _call(self, request: GenerationRequest, prompts: list[str], width: int, height: int):
        """Images of ``prompts`` (prompt-major). SD 1.5 prompts that need different numbers
        of 77-token windows (with the negative prompt) go in separate pipeline calls, so each
        prompt is encoded exactly as it would be alone."""
        groups = [list(range(len(prompts)))]
        if self.family == BaseFamily.SD15:
            groups = group_by_windows(self.pipe.tokenizer, prompts, request.negative_prompt)
        if len(groups) == 1:
            return self._call_group(request, prompts, width, height)
        n = request.images_per_prompt
        images: list[torch.Tensor | None] = [None] * len(prompts)
        for group in groups:
            made = self._call_group(request, [prompts[i] for i in group], width, height)
            for j, i in enumerate(group):
                images[i] = made[j * n : (j + 1) * n]
        return torch.cat(images)

    def _call_group(self, request: GenerationRequest, prompts: list[str], width: int, height: int):
        generators = [
            torch.Generator(self.noise_device).manual_seed(seed)
            for _ in prompts
            for seed in request.seeds()
        ]
        kwargs = {
            "prompt": prompts,
            "num_images_per_prompt": request.images_per_prompt,
            "num_inference_steps": request.steps,
            "guidance_scale": request.guidance,
            "width": width,
            "height": height,
            "generator": generators,
            "output_type": "pt",
        }
        if self._on_step is not None:
            on_step = self._on_step

            def step_end(pipe, step: int, timestep, tensors: dict) -> dict:
                on_step(step + 1, getattr(pipe, "num_timesteps", None) or request.steps)
                return tensors

            kwargs["callback_on_step_end"] = step_end
        if self.family != BaseFamily.FLUX1:
            kwargs["negative_prompt"] = [request.negative_prompt] * len(prompts)
        if self.family == BaseFamily.SD15 and needs_windows(
            self.pipe.tokenizer, [*prompts, request.negative_prompt]
        ):
            embeds, negative = long_prompt_embeds(self.pipe, prompts, kwargs.pop("negative_prompt"))
            del kwargs["prompt"]
            kwargs.update(prompt_embeds=embeds, negative_prompt_embeds=negative)
        with torch.inference_mode():
            images = self.pipe(**kwargs).images
        if not bool(torch.isfinite(images).all()):
            raise GenerationError(
                "the pipeline produced NaN or infinite pixels (they would be saved as a black "
                "image): its weights overflow. Fix: use dtype float32 or bfloat16 (SDXL's VAE "
                "overflows in float16), and leave out experts that make it overflow"
            )
        return images.float().clamp(0, 1).cpu()
