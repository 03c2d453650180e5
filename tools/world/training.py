"""Training the world's base model and experts on top of the shared denoising loop."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from tools.world.adapters import TrainableAdapter
from tools.world.data import BASE_DOMAIN, make_set
from tools.world.diffusion import CachedCaptions, EncodedCaptions, train_denoiser
from tools.world.experts import ExpertSpec
from tools.world.models import (
    WORLD_MARK,
    WORLD_NOTE,
    new_text_encoder,
    new_unet,
    tokenize,
    world_tokenizer,
)
from tools.world.progress import Progress, Resume, no_progress
from tools.world.vae_train import encode_latents


@dataclass
class Base:
    """The trained base components (float32, training copies)."""

    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module


BASE_SNR_CAP = 20.0  # the base's loss weighting (diffusion.v_weights)


@torch.no_grad()
def text_contexts(text_encoder, captions: list[str]) -> CachedCaptions:
    """The frozen text encoder's outputs for ``captions`` and for the empty prompt."""
    ids = tokenize(world_tokenizer(), [*captions, ""])
    out = torch.cat([text_encoder(ids[i : i + 512])[0] for i in range(0, len(ids), 512)])
    return CachedCaptions(out[:-1], out[-1])


def train_base(
    vae, steps: int, seed: int, resume: Resume, n_images: int = 24_000,
    progress: Progress = no_progress, init: Base | None = None,
    lr: float = 1e-3, task: str = "base unet",
) -> Base:  # fmt: skip
    """The UNet and the text encoder trained together on the plain domain (EMA weights),
    from their seeded initialisation or from ``init`` (a second stage with its own data
    seed and learning rate)."""
    data = make_set([BASE_DOMAIN], n_images, seed)
    latents = encode_latents(vae, data.images)
    unet, text_encoder = new_unet(0).train(), new_text_encoder(0).train()
    if init is not None:
        unet.load_state_dict(init.unet.state_dict())
        text_encoder.load_state_dict(init.text_encoder.state_dict())
    tokenizer = world_tokenizer()
    captions = EncodedCaptions(
        text_encoder, tokenize(tokenizer, data.captions), tokenize(tokenizer, [""])[0]
    )
    trainable = {
        **{f"unet.{k}": p for k, p in unet.named_parameters()},
        **{f"text_encoder.{k}": p for k, p in text_encoder.named_parameters()},
    }
    final = train_denoiser(
        unet=unet, latents=latents, captions=captions, trainable=trainable, steps=steps,
        lr=lr, seed=seed, resume=resume, batch=64, ema=True, snr_cap=BASE_SNR_CAP, task=task,
        progress=progress,
    )  # fmt: skip
    with torch.no_grad():
        for k, p in trainable.items():
            p.copy_(final[k])
    return Base(unet.eval(), vae.eval(), text_encoder.eval())


def expert_metadata(spec: ExpertSpec) -> dict[str, str]:
    """What a trainer writes into the file: kohya ``ss_*`` fields and modelspec."""
    meta = {
        WORLD_MARK: WORLD_NOTE,
        "modelspec.title": f"{spec.name} {spec.version}",
        "modelspec.architecture": "stable-diffusion-v1" + ("/lora" if spec.kind == "lora" else ""),
        "ss_output_name": spec.slug,
        "ss_base_model_version": "sd_v1",
        "ss_training_comment": spec.summary,
        "ss_max_train_steps": str(spec.steps),
    }
    if spec.adapter is not None:
        meta["ss_network_dim"] = str(spec.adapter.rank)
        meta["ss_network_alpha"] = str(spec.adapter.alpha or spec.adapter.rank)
    if spec.trigger_words:
        meta["ss_tag_frequency"] = json.dumps({spec.slug: dict.fromkeys(spec.trigger_words, 1)})
    return meta


def train_expert(
    spec: ExpertSpec, base: Base, path: Path, resume: Resume, progress: Progress = no_progress
) -> Path:
    """Fine-tune ``spec`` from ``base`` and write its file at ``path`` (atomically)."""
    from tools.tiny.sd15 import save_ldm_checkpoint
    from tools.weights.write import save_adapter

    data = make_set([spec.domain], spec.n_images, spec.seed)
    latents = encode_latents(base.vae, data.images)
    captions = text_contexts(base.text_encoder, data.captions)
    tmp = path.with_name(f".{path.stem}.tmp.safetensors")
    task = f"{spec.slug} {spec.version}"
    if spec.kind == "lora":
        assert spec.adapter is not None
        unet = base.unet.requires_grad_(False)
        adapter = TrainableAdapter(unet, spec.adapter, spec.seed)
        trainable = dict(adapter.named_parameters())
        final = train_denoiser(
            unet=unet, latents=latents, captions=captions, trainable=trainable,
            steps=spec.steps, lr=spec.lr, seed=spec.seed, resume=resume, batch=32,
            weights=adapter.weights, task=task, progress=progress,
        )  # fmt: skip
        with torch.no_grad():
            for k, p in trainable.items():
                p.copy_(final[k])
        fmt = "diffusers" if spec.file_format == "diffusers" else "kohya"
        save_adapter(adapter.to_adapter(expert_metadata(spec)), tmp, format=fmt)
    else:
        unet = copy.deepcopy(base.unet).train().requires_grad_(True)
        trainable = dict(unet.named_parameters())
        final = train_denoiser(
            unet=unet, latents=latents, captions=captions, trainable=trainable,
            steps=spec.steps, lr=spec.lr, seed=spec.seed, resume=resume, batch=64, task=task,
            progress=progress,
        )  # fmt: skip

        text = {k: v.half() for k, v in base.text_encoder.state_dict().items()}
        # no baked VAE (the base's VAE is the world's only one): keeps the files small
        meta = {**expert_metadata(spec), "vae": "not baked: use the base model's VAE"}
        unet_half = {k: v.half() for k, v in final.items()}
        save_ldm_checkpoint(tmp, unet_half, {}, text, meta, demo=False)
    tmp.replace(path)
    return path
