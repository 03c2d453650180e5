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

from tools.world.captions import caption
from tools.world.experts import EXPERTS, ExpertSpec
from tools.world.judge import Judge
from tools.world.progress import Progress, no_progress
from tools.world.scene import Scene
from tools.world.vocab import ATTRIBUTES, COLOURS, SHAPES

STEPS = 20
GUIDANCE = 5.0
EVAL_SEED = 70_000  # captions and images of the evaluation never come from training seeds


def plain_prompts(n_per_combo: int = 1, seed: int = EVAL_SEED) -> list[tuple[str, Scene]]:
    """Held-out plain captions: every shape × colour ``n_per_combo`` times."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_per_combo):
        for shape in SHAPES:
            for colour in COLOURS:
                scene = Scene(shape, colour, seed=int(rng.integers(2**31)))
                out.append((caption(scene, rng), scene))
    return out


def attribute_prompts(attribute: str, value: str, n: int, seed: int) -> list[tuple[str, Scene]]:
    """``n`` held-out captions asking for ``attribute = value`` (plain otherwise)."""
    rng = np.random.default_rng(seed)
    shapes, colours = list(SHAPES), list(COLOURS)
    out = []
    for i in range(n):
        fields = {"shape": shapes[i % len(shapes)], "colour": colours[(i * 5 + 3) % len(colours)]}
        fields[attribute] = value
        scene = Scene(**fields, seed=int(rng.integers(2**31)))
        out.append((caption(scene, rng), scene))
    return out


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
        prompts=list(prompts), images_per_prompt=seeds, steps=STEPS, guidance=GUIDANCE, seed=0
    )
    return generator.generate(request, plan).images


def lora_plan(path: Path, spec: ExpertSpec):
    from tools.weights.plan import MergePlan, WeightedExpert

    expert = WeightedExpert(path=path, coefficient=1.0, name=spec.slug)
    if spec.kind == "lora":
        return MergePlan(loras=[expert], normalize="raw")
    return MergePlan(checkpoints=[expert], normalize="raw")


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
    scale, pad = 2, 220
    tiles = [torch.cat(list(r), dim=2) for r in rows]
    width = tiles[0].shape[2] * scale + pad * 2
    canvas = Image.new("RGB", (width, len(tiles) * 64 * scale), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (tile, label) in enumerate(zip(tiles, labels, strict=True)):
        array = (tile.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        image = Image.fromarray(array).resize((array.shape[1] * scale, 64 * scale), Image.NEAREST)
        canvas.paste(image, (pad * 2, i * 64 * scale))
        words, line = label.split(" "), ""
        y = i * 64 * scale + 4
        for word in words:
            if len(line) + len(word) > 60:
                draw.text((4, y), line, fill="black")
                y, line = y + 12, ""
            line += word + " "
        draw.text((4, y), line, fill="black")
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out
