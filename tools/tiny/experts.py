"""Tiny experts made from a tiny base pipeline: fine-tuned checkpoints and LoRAs.

A checkpoint expert is the base with every UNet and text-encoder tensor moved by seeded
Gaussian noise; a LoRA expert has seeded random low-rank factors on the attention
projections. Both are demo material (their files say so in their metadata).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch

from graph.records import BaseFamily
from tools.tiny.sd15 import DEMO_METADATA, mark_demo_folder, save_ldm_checkpoint

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


def perturbed_state_dict(
    module: torch.nn.Module, seed: int, strength: float
) -> dict[str, torch.Tensor]:
    """``module``'s tensors plus noise of ``strength`` times each tensor's own spread."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, value in module.state_dict().items():
        if not value.is_floating_point():
            out[name] = value.clone()
            continue
        noise = torch.randn(value.shape, generator=generator, dtype=torch.float32)
        spread = value.float().std() if value.numel() > 1 else value.float().abs()
        out[name] = (value.float() + strength * spread * noise).to(value.dtype)
    return out


def make_tiny_checkpoint(
    pipe,
    path: Path,
    seed: int,
    strength: float = 0.05,
    format: Literal["ldm", "diffusers"] = "ldm",
) -> Path:
    """A checkpoint expert: ``pipe``'s weights perturbed (UNet and text encoder; VAE kept).

    ``ldm`` writes one single-file ``.safetensors`` at ``path``; ``diffusers`` writes a
    diffusers folder at ``path``. ``pipe`` itself is not changed.
    """
    unet = perturbed_state_dict(pipe.unet, seed, strength)
    text_encoder = perturbed_state_dict(pipe.text_encoder, seed + 1, strength)
    path = Path(path)
    if format == "ldm":
        return save_ldm_checkpoint(path, unet, pipe.vae.state_dict(), text_encoder)
    expert = copy.deepcopy(pipe)
    expert.unet.load_state_dict(unet)
    expert.text_encoder.load_state_dict(text_encoder)
    expert.save_pretrained(path, safe_serialization=True)
    mark_demo_folder(path)
    return path


def target_modules(
    pipe, components: Sequence[str] = ("unet", "text_encoder")
) -> dict[str, torch.nn.Linear]:
    """The linear layers a tiny LoRA adapts, by canonical ``component.module.path``."""
    from tools.weights.names import canonical_name

    suffixes = {"unet": UNET_TARGETS, "text_encoder": TEXT_TARGETS}
    found = {}
    for component in components:
        for name, module in getattr(pipe, component).named_modules():
            if isinstance(module, torch.nn.Linear) and name.endswith(suffixes[component]):
                found[canonical_name(f"{component}.{name}")] = module
    return found


def tiny_lora_adapter(
    pipe,
    seed: int,
    rank: int = 4,
    components: Sequence[str] = ("unet", "text_encoder"),
    strength: float = 0.5,
    trigger_words: Sequence[str] = (),
):
    """A seeded random LoRA for ``pipe`` in the weights toolkit's canonical form.

    Each module's ``up @ down`` (scale ``alpha / rank`` = 1) has a spread of about
    ``strength`` times its weight's.
    """
    from tools.weights.adapter import Adapter, AdapterModule

    generator = torch.Generator().manual_seed(seed)
    modules = {}
    for name, module in target_modules(pipe, components).items():
        out_features, in_features = module.weight.shape
        down = torch.randn(rank, in_features, generator=generator) / in_features**0.5
        up = torch.randn(out_features, rank, generator=generator) / rank**0.5
        up *= strength * module.weight.detach().float().std() * in_features**0.5
        modules[name] = AdapterModule(
            kind="lora", factors={"down": down, "up": up}, alpha=float(rank)
        )
    metadata = dict(DEMO_METADATA)
    if trigger_words:  # kohya's field for training captions, read back as trigger words
        metadata["ss_tag_frequency"] = json.dumps({"demo": dict.fromkeys(trigger_words, 1)})
    return Adapter(format="kohya-lora", family=BaseFamily.SD15, modules=modules, metadata=metadata)


def make_tiny_lora(
    pipe,
    path: Path,
    seed: int,
    rank: int = 4,
    format: Literal["diffusers", "kohya"] = "diffusers",
    components: Sequence[str] = ("unet", "text_encoder"),
    strength: float = 0.5,
    trigger_words: Sequence[str] = (),
) -> Path:
    """Write :func:`tiny_lora_adapter` to the ``.safetensors`` file ``path``.

    ``kohya``: ``lora_unet_…lora_down.weight`` / ``.alpha`` keys; ``diffusers``:
    ``unet.….lora_A.weight`` keys with the LoRA config in the metadata. Written by the
    weights toolkit's :func:`tools.weights.write.save_adapter`.
    """
    from tools.weights.write import save_adapter

    adapter = tiny_lora_adapter(pipe, seed, rank, components, strength, trigger_words)
    return save_adapter(adapter, Path(path), format=format)
