"""Denoising training of the world's UNet: the base, full fine-tunes and adapters.

One loop serves all three: ε-prediction on SD 1.5's noise schedule over precomputed VAE
latents, 10 % caption dropout (so classifier-free guidance works), resumable snapshots.
Captions come as cached text-encoder outputs (experts: the base's encoder is frozen) or as
token ids through an encoder that trains with the UNet (the base). The base weighs each
step's ε loss by ``(1 + SNR) / SNR`` (capped): the loss of v-prediction, which gives the
noisy steps — where the text decides colour and shape — their share of the gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from tools.world.models import noise_scheduler
from tools.world.progress import Progress, Resume, no_progress

CAPTION_DROPOUT = 0.1


class EMA:
    """Exponential moving average of parameters (warm-up ``(1+n)/(10+n)``)."""

    def __init__(self, params: dict[str, torch.Tensor], decay: float = 0.999) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in params.items()}
        self.n = 0

    @torch.no_grad()
    def update(self, params: dict[str, torch.Tensor]) -> None:
        self.n += 1
        d = min(self.decay, (1 + self.n) / (10 + self.n))
        for k, v in params.items():
            self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)


@dataclass
class CachedCaptions:
    """Text-encoder outputs computed once (a frozen encoder): ``N × 77 × d`` and the empty
    prompt's ``77 × d``."""

    contexts: torch.Tensor
    empty: torch.Tensor

    def __len__(self) -> int:
        return len(self.contexts)

    def batch(self, idx: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        context = self.contexts[idx].clone()
        context[drop] = self.empty
        return context


@dataclass
class EncodedCaptions:
    """Token ids encoded each step by a text encoder that trains with the UNet."""

    text_encoder: nn.Module
    ids: torch.Tensor  # N × 77
    empty_ids: torch.Tensor  # 77

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, idx: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        ids = self.ids[idx].clone()
        ids[drop] = self.empty_ids
        return self.text_encoder(ids)[0]


Captions = CachedCaptions | EncodedCaptions


def v_weights(alphas: torch.Tensor, t: torch.Tensor, cap: float) -> torch.Tensor:
    """Per-sample weights ``min((1 + SNR) / SNR, cap)`` of the ε loss, normalised to mean 1."""
    snr = alphas[t] / (1 - alphas[t])
    w = ((1 + snr) / snr).clamp(max=cap)
    return w / w.mean()


def train_denoiser(
    *,
    unet: nn.Module,
    latents: torch.Tensor,
    captions: Captions,
    trainable: dict[str, nn.Parameter],
    steps: int,
    lr: float,
    seed: int,
    resume: Resume,
    batch: int = 64,
    weights: Callable[[], dict[str, torch.Tensor]] | None = None,
    ema: bool = False,
    snr_cap: float | None = None,
    task: str = "unet",
    progress: Progress = no_progress,
) -> dict[str, torch.Tensor]:
    """Train ``trainable`` to predict noise; returns the final (or EMA) trainable tensors.

    ``weights`` (adapters) gives UNet weights to substitute each step through
    ``torch.func.functional_call``; without it the UNet's own parameters train (with an
    :class:`EncodedCaptions` encoder's, when ``trainable`` holds them). ``snr_cap``: weigh
    the loss by :func:`v_weights` with this cap (None: the plain ε loss).
    """
    scheduler = noise_scheduler()
    alphas = scheduler.alphas_cumprod
    params = list(trainable.values())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / warm)
            * 0.5
            * (1 + torch.cos(torch.tensor(s / steps * 3.14159)).item())
        ),
    )
    average = EMA(trainable) if ema else None
    g = torch.Generator().manual_seed(seed)
    start = 0
    if (snap := resume.load()) is not None:
        with torch.no_grad():
            for k, p in trainable.items():
                p.copy_(snap["params"][k])
        opt.load_state_dict(snap["opt"])
        sched.load_state_dict(snap["sched"])
        g.set_state(snap["rng"])
        if average is not None:
            average.shadow, average.n = snap["ema"], int(snap["ema_n"])
        start = snap["step"]
    for step in range(start, steps):
        idx = torch.randint(0, len(latents), (batch,), generator=g)
        x0 = latents[idx]
        drop = torch.rand(batch, generator=g) < CAPTION_DROPOUT
        context = captions.batch(idx, drop)
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, len(alphas), (batch,), generator=g)
        a = alphas[t].sqrt().view(-1, 1, 1, 1)
        s = (1 - alphas[t]).sqrt().view(-1, 1, 1, 1)
        noisy = a * x0 + s * noise
        if weights is None:
            pred = unet(noisy, t, context).sample
        else:
            pred = torch.func.functional_call(unet, weights(), (noisy, t, context)).sample
        if snr_cap is None:
            loss = (pred - noise).pow(2).mean()
        else:
            loss = ((pred - noise).pow(2).mean((1, 2, 3)) * v_weights(alphas, t, snr_cap)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if average is not None:
            average.update(trainable)
        progress(task, step + 1, steps)
        if (step + 1) % resume.every == 0:
            state = {
                "params": {k: v.detach() for k, v in trainable.items()},
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "rng": g.get_state(),
            }
            if average is not None:
                state |= {"ema": average.shadow, "ema_n": torch.tensor(average.n)}
            resume.save(step + 1, state)
    final = average.shadow if average is not None else trainable
    return {k: v.detach().clone() for k, v in final.items()}
