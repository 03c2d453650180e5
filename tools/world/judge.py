"""The world's judge: per-attribute classifiers that score whether an image shows its prompt.

Like GenEval's detector-based checks, the judge reads an image and names its shape,
colour, background and style; a prompt's alignment is how many of the attributes it
asks for the image shows (:func:`tools.world.captions.parse_prompt` reads what it asks).
One small CNN with four heads, trained on rendered world images (raw and passed through
the world's VAE, so generated images are in its training distribution).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from tools.world.captions import parse_prompt
from tools.world.data import Domain, make_set
from tools.world.progress import Progress, Resume, no_progress
from tools.world.vocab import ATTRIBUTES, BACKGROUNDS, STYLES


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU(),
        nn.Conv2d(cout, cout, 3, 1, 1), nn.GroupNorm(8, cout), nn.SiLU(),
    )  # fmt: skip


class Judge(nn.Module):
    """32×32 RGB in [0, 1] → logits per attribute (:data:`ATTRIBUTES` order of values)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _block(3, width, 1), _block(width, 2 * width, 2),
            _block(2 * width, 4 * width, 2), _block(4 * width, 4 * width, 2),
        )  # fmt: skip
        self.heads = nn.ModuleDict(
            {name: nn.Linear(8 * width, len(values)) for name, values in ATTRIBUTES.items()}
        )

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.body(images * 2 - 1)
        pooled = torch.cat([features.mean((2, 3)), features.amax((2, 3))], 1)
        return {name: head(pooled) for name, head in self.heads.items()}

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor, batch: int = 256) -> dict[str, torch.Tensor]:
        """Softmax probabilities per attribute for float images ``N × 3 × 32 × 32``."""
        parts: dict[str, list[torch.Tensor]] = {name: [] for name in ATTRIBUTES}
        for i in range(0, len(images), batch):
            for name, logits in self(images[i : i + batch]).items():
                parts[name].append(logits.softmax(-1))
        return {name: torch.cat(p) for name, p in parts.items()}


def labels(scenes) -> dict[str, torch.Tensor]:
    """Class indices of each attribute for a list of scenes."""
    return {
        name: torch.tensor([values.index(getattr(s, name)) for s in scenes])
        for name, values in ATTRIBUTES.items()
    }


JUDGE_DOMAIN = Domain(backgrounds=tuple(BACKGROUNDS), styles=tuple(STYLES))


def _roundtrip(vae, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        z = vae.encode(x * 2 - 1).latent_dist.mean
        return ((vae.decode(z).sample + 1) / 2).clamp(0, 1)


def train_judge(
    steps: int,
    seed: int,
    resume: Resume,
    vae=None,
    n_images: int = 24_000,
    batch: int = 128,
    progress: Progress = no_progress,
) -> Judge:
    """A judge trained on every attribute combination (the instrument sees everything)."""
    data = make_set([JUDGE_DOMAIN], n_images, seed)
    x = torch.from_numpy(data.images).permute(0, 3, 1, 2).float() / 255
    if vae is not None:  # half of the images as the VAE renders them
        half = torch.arange(0, len(x), 2)
        x[half] = torch.cat(
            [_roundtrip(vae, x[half[i : i + 256]]) for i in range(0, len(half), 256)]
        )
    y = labels(data.scenes)
    judge = Judge()
    opt = torch.optim.AdamW(judge.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    start = 0
    if (snap := resume.load()) is not None:
        judge.load_state_dict(snap["model"])
        opt.load_state_dict(snap["opt"])
        sched.load_state_dict(snap["sched"])
        g.set_state(snap["rng"])
        start = snap["step"]
    loss_fn = nn.CrossEntropyLoss()
    for step in range(start, steps):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        noisy = (x[idx] + 0.03 * torch.randn(x[idx].shape, generator=g)).clamp(0, 1)
        out = judge(noisy)
        loss = sum(loss_fn(out[name], y[name][idx]) for name in ATTRIBUTES)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        progress("judge", step + 1, steps)
        state = {"model": judge.state_dict(), "opt": opt.state_dict()}
        resume.save(step + 1, {**state, "sched": sched.state_dict(), "rng": g.get_state()})
    return judge.eval()


def accuracy(judge: Judge, images: np.ndarray, scenes) -> dict[str, float]:
    """Per-attribute accuracy of ``judge`` on uint8 images with known scenes."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    probs = judge.probabilities(x)
    y = labels(scenes)
    return {name: float((probs[name].argmax(-1) == y[name]).float().mean()) for name in ATTRIBUTES}


def alignment(
    judge: Judge, images: torch.Tensor, prompts: Sequence[str]
) -> tuple[torch.Tensor, list[dict[str, bool]]]:
    """Per image: mean probability of the asked values, and which asked attributes it shows.

    ``images`` float ``N × 3 × 32 × 32`` in [0, 1]. A prompt that asks for nothing the judge
    knows scores NaN (and shows nothing).
    """
    probs = judge.probabilities(images)
    scores, shown = [], []
    for i, prompt in enumerate(prompts):
        asked = parse_prompt(prompt)
        hits = {a: int(probs[a][i].argmax()) == ATTRIBUTES[a].index(v) for a, v in asked.items()}
        values = [float(probs[a][i, ATTRIBUTES[a].index(v)]) for a, v in asked.items()]
        scores.append(float(np.mean(values)) if values else float("nan"))
        shown.append(hits)
    return torch.tensor(scores), shown
