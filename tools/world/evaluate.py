"""Quality bars of the built world, measured with its own judge on generated images.

- the base on held-out plain captions (every shape × colour, several seeds): does the
  judge find the asked shape and colour?
- each expert alone at weight 1 on prompts asking for its attribute (detected? shape and
  colour kept?), and on prompts that do not ask for it (does it change images anyway?).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tools.world.experts import EXPERTS, ExpertSpec
from tools.world.judge import Judge
from tools.world.progress import Progress, no_progress
from tools.world.prompts import EVAL_SEED, attribute_prompts, plain_prompts
from tools.world.scene import IMAGE_SIZE, Scene
from tools.world.vocab import ATTRIBUTES

STEPS = 20
GUIDANCE = 5.0


def load_world_judge(path: Path) -> Judge:
    from safetensors.torch import load_file

    judge = Judge()
    judge.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return judge.eval()


@dataclass
class Judged:
    """Per-attribute hit rates of images against the scenes they should show."""

    rates: dict[str, float]
    images: torch.Tensor


def judge_images(judge: Judge, images: torch.Tensor, scenes: Sequence[Scene]) -> dict[str, float]:
    probs = judge.probabilities(images)
    return {
        a: float(
            np.mean(
                [
                    int(probs[a][i].argmax()) == ATTRIBUTES[a].index(getattr(s, a))
                    for i, s in enumerate(scenes)
                ]
            )
        )
        for a in ATTRIBUTES
    }


def generate(generator, prompts: Sequence[str], seeds: int, plan=None) -> torch.Tensor:
    """Images prompt-major (``p * seeds + i``), the world's sampler settings."""
    from tools.generation.request import GenerationRequest

    request = GenerationRequest(
        prompts=list(prompts), images_per_prompt=seeds, steps=STEPS, guidance=GUIDANCE, seed=0,
        width=IMAGE_SIZE, height=IMAGE_SIZE,
    )  # fmt: skip
    return generator.generate(request, plan).images


def lora_plan(path: Path, spec: ExpertSpec):
    from tools.weights.plan import MergePlan, WeightedExpert

    expert = WeightedExpert(path=path, coefficient=1.0, name=spec.slug)
    if spec.kind == "lora":
        return MergePlan(loras=[expert], normalize="raw")
    return MergePlan(checkpoints=[expert], normalize="raw")


def instrument_figures(world: Path, n: int = 1600) -> dict:
    """The judge's held-out accuracy per attribute on real world images (single-attribute
    domains and compositional scenes), and the world CLIP's caption retrieval (top-1 of 64)."""
    from tools.world.data import SINGLE_DOMAINS, make_set
    from tools.world.judge import accuracy
    from tools.world.prompts import compositional_prompts
    from tools.world.scene import render_batch

    judge = load_world_judge(world / "judge.safetensors")
    single = make_set(SINGLE_DOMAINS, n, EVAL_SEED + 99)
    mixed = [scene for _, scene in compositional_prompts(98, EVAL_SEED + 98)]
    figures = {
        "judge_single": accuracy(judge, single.images, single.scenes),
        "judge_compositional": accuracy(judge, render_batch(mixed), mixed),
        "images": n,
        "compositional_images": len(mixed),
    }
    figures["clip_top1_of_64"] = _clip_retrieval(world, single.images[:512], single.captions[:512])
    return figures


@torch.no_grad()
def _clip_retrieval(world: Path, images: np.ndarray, captions: list[str]) -> float:
    """How often an image's own caption is the closest of 64 (the world CLIP)."""
    from transformers import CLIPModel

    from tools.world.clip_train import clip_features
    from tools.world.models import tokenize, world_tokenizer

    model = CLIPModel.from_pretrained(world / "clip").float().eval()
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    hits = []
    for i in range(0, len(captions) - 63, 64):
        ids = tokenize(world_tokenizer(), captions[i : i + 64])
        image, text = clip_features(model, pixels[i : i + 64], ids)
        hits.append((image @ text.T).argmax(-1).eq(torch.arange(64)).float().mean())
    return float(torch.stack(hits).mean())


def evaluate_world(
    world: Path, seeds: int = 8, expert_prompts: int = 24, progress: Progress = no_progress
) -> dict:
    """Every figure of the quality bars, as a JSON-able dict."""
    from tools.generation.generator import Generator

    generator = Generator.from_path(world / "base", max_batch=64)
    judge = load_world_judge(world / "judge.safetensors")
    plain = plain_prompts()
    base_images = generate(generator, [p for p, _ in plain], seeds)
    base_scenes = [s for _, s in plain for _ in range(seeds)]
    figures: dict = {"base": judge_images(judge, base_images, base_scenes), "experts": {}}
    figures["instruments"] = instrument_figures(world)
    figures["base"]["images"] = len(base_scenes)
    progress("evaluate", 1, len(EXPERTS) + 1)
    # prompts not asking for anything an expert serves: the first plain prompts, 2 seeds
    neutral = plain[:expert_prompts]
    neutral_base = generate(generator, [p for p, _ in neutral], 2)
    for k, spec in enumerate(EXPERTS):
        path = world / "experts" / spec.file_name
        plan = lora_plan(path, spec)
        row: dict = {"kind": spec.kind, "trap": spec.trap}
        if spec.attribute is not None:
            attribute, value = spec.attribute
            asked = attribute_prompts(attribute, value, expert_prompts, EVAL_SEED + 1 + k)
            images = generate(generator, [p for p, _ in asked], 2, plan)
            scenes = [s for _, s in asked for _ in range(2)]
            hits = judge_images(judge, images, scenes)
            row |= {"attribute": f"{attribute}={value}", "detected": hits[attribute],
                    "shape": hits["shape"], "colour": hits["colour"]}  # fmt: skip
        else:
            row |= {"attribute": None}
        unasked = generate(generator, [p for p, _ in neutral], 2, plan)
        scenes = [s for _, s in neutral for _ in range(2)]
        hits = judge_images(judge, unasked, scenes)
        row["unasked_change"] = float((unasked - neutral_base).abs().mean())
        row["unasked_shape"], row["unasked_colour"] = hits["shape"], hits["colour"]
        if spec.attribute is not None:
            attribute, value = spec.attribute
            probs = judge.probabilities(unasked)[attribute].argmax(-1)
            row["unasked_detected"] = float(
                (probs == ATTRIBUTES[attribute].index(value)).float().mean()
            )
        figures["experts"][f"{spec.slug} {spec.version}"] = row
        progress("evaluate", k + 2, len(EXPERTS) + 1)
    return figures


def picture_grid(world: Path, out: Path, seed: int = 3) -> Path:
    """A PNG: rows = base and each style / background expert, columns = prompts asking for
    that row's attribute (nearest-neighbour upscaled, so a person can judge at a glance)."""
    from PIL import Image, ImageDraw

    from tools.generation.generator import Generator

    generator = Generator.from_path(world / "base", max_batch=64)
    rows = []
    labels = []
    plain = [p for p, _ in plain_prompts()][::6][:8]
    rows.append(generate(generator, plain, 1))
    labels.append("base: " + " | ".join(plain[:2]))
    for k, spec in enumerate(EXPERTS):
        if spec.attribute is None:
            continue
        attribute, value = spec.attribute
        prompts = [p for p, _ in attribute_prompts(attribute, value, 8, EVAL_SEED + 500 + k)]
        rows.append(
            generate(generator, prompts, 1, lora_plan(world / "experts" / spec.file_name, spec))
        )
        labels.append(f"{spec.name} ({spec.kind}): {prompts[0]}")
    scale, pad, side = 4, 220, IMAGE_SIZE
    tiles = [torch.cat(list(r), dim=2) for r in rows]
    width = tiles[0].shape[2] * scale + pad * 2
    canvas = Image.new("RGB", (width, len(tiles) * side * scale), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (tile, label) in enumerate(zip(tiles, labels, strict=True)):
        array = (tile.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        image = Image.fromarray(array).resize((array.shape[1] * scale, side * scale), Image.NEAREST)
        canvas.paste(image, (pad * 2, i * side * scale))
        words, line = label.split(" "), ""
        y = i * side * scale + 4
        for word in words:
            if len(line) + len(word) > 60:
                draw.text((4, y), line, fill="black")
                y, line = y + 12, ""
            line += word + " "
        draw.text((4, y), line, fill="black")
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out
