"""Training the world's VAE (the tiny SD 1.5 ``AutoencoderKL``) on single-attribute images."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tools.world.data import SINGLE_DOMAINS, make_set, to_tensor
from tools.world.models import new_vae
from tools.world.progress import Progress, Resume, no_progress

LATENT_WEIGHT = 1e-4  # keeps latents bounded; SD's VAE is nearly an autoencoder too
COLOUR_WEIGHT = 2.0  # L1 of 4×-pooled images: hue is low-frequency, pixels' L1 favours edges
# Latent channels 0-2 are pulled towards the 4×-pooled RGB image early on: without this
# anchor the tiny VAE learnt shapes but not hue within any affordable number of steps (every
# object came out one average colour). It fades out over the first ANCHOR_FADE of training,
# so later all four channels carry shape detail (held, stars and crosses decoded as blobs).
ANCHOR_WEIGHT = 0.5
ANCHOR_FADE = 0.4
# The decoder learns from latents with this much Gaussian noise added: the UNet's samples are
# never exact, and a decoder trained on exact latents turned small errors into textures.
LATENT_NOISE = 0.1


def anchor_loss(latents: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """MSE between latent channels 0-2 and the image pooled to the latent grid."""
    pooled = F.adaptive_avg_pool2d(x, latents.shape[-2:])
    return (latents[:, :3] - pooled).pow(2).mean()


def reconstruction_loss(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L1 + ½·MSE on pixels, plus L1 on 4×-pooled images (colour)."""
    pooled = F.avg_pool2d(recon, 4) - F.avg_pool2d(x, 4)
    pixels = (recon - x).abs().mean() + 0.5 * (recon - x).pow(2).mean()
    return pixels + COLOUR_WEIGHT * pooled.abs().mean()


def train_vae(
    steps: int,
    seed: int,
    resume: Resume,
    batch: int = 32,
    n_images: int = 12_000,
    lr: float = 1e-3,
    progress: Progress = no_progress,
):
    """The trained VAE, with ``config.scaling_factor`` set so latents have unit spread."""
    data = to_tensor(make_set(SINGLE_DOMAINS, n_images, seed).images)
    vae = new_vae(seed).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.05)
    generator = torch.Generator().manual_seed(seed)
    start = 0
    if (snap := resume.load()) is not None:
        vae.load_state_dict(snap["model"])
        opt.load_state_dict(snap["opt"])
        sched.load_state_dict(snap["sched"])
        generator.set_state(snap["rng"])
        start = snap["step"]
    for step in range(start, steps):
        idx = torch.randint(0, len(data), (batch,), generator=generator)
        x = data[idx]
        mean = vae.encode(x).latent_dist.mean  # no sampled posterior: converges far faster
        recon = vae.decode(mean + LATENT_NOISE * torch.randn(mean.shape, generator=generator))
        anchor = ANCHOR_WEIGHT * max(0.0, 1 - step / (ANCHOR_FADE * steps))
        loss = reconstruction_loss(recon.sample, x) + LATENT_WEIGHT * mean.pow(2).mean()
        loss = loss + anchor * anchor_loss(mean, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        progress("vae", step + 1, steps)
        state = {"model": vae.state_dict(), "opt": opt.state_dict()}
        resume.save(step + 1, {**state, "sched": sched.state_dict(), "rng": generator.get_state()})
    vae.eval()
    standardise_latents(vae, data[: min(len(data), 2048)])
    return vae


@torch.no_grad()
def standardise_latents(vae, sample: torch.Tensor) -> None:
    """Fold each latent channel's mean and spread over ``sample`` into the VAE's 1×1
    ``quant_conv`` / ``post_quant_conv``, so latents are centred with unit spread per
    channel and ``scaling_factor`` is 1 — an exact reparametrisation (decoding is
    unchanged). The anchored colour channels have a mean far from 0 (light backgrounds);
    SD 1.5 pipelines know no shift factor, so the shift lives in the weights."""
    latents = torch.cat(
        [vae.encode(sample[i : i + 256]).latent_dist.mean for i in range(0, len(sample), 256)]
    )
    mean, std = latents.mean((0, 2, 3)), latents.std((0, 2, 3))
    n = len(mean)
    encode, decode = vae.quant_conv, vae.post_quant_conv
    decode.bias += decode.weight[:, :, 0, 0] @ mean
    decode.weight *= std.view(1, -1, 1, 1)
    encode.weight[:n] /= std.view(-1, 1, 1, 1)
    encode.bias[:n] = (encode.bias[:n] - mean) / std
    encode.bias[n:] -= 2 * std.log()
    vae.register_to_config(scaling_factor=1.0)


@torch.no_grad()
def encode_latents(vae, images, batch: int = 256) -> torch.Tensor:
    """Scaled latent means of uint8 images (what the UNet trains on)."""
    x = to_tensor(images)
    out = [vae.encode(x[i : i + batch]).latent_dist.mean for i in range(0, len(x), batch)]
    return torch.cat(out) * vae.config.scaling_factor
