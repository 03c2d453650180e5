"""Recipes in the formats users already run: an A1111 prompt and a ComfyUI workflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents.pipeline.recipe import Recipe

SAMPLER = "euler"
SCHEDULER = "normal"


def _lora_name(path: str | None, fallback: str) -> str:
    return Path(path).stem if path else fallback


def to_a1111(recipe: Recipe) -> str:
    """Prompt with ``<lora:name:weight>`` tags plus A1111 generation parameters.

    A1111 applies ``W + Σ m·ΔW`` with ``m`` the tag's multiplier, so the merge weights
    reproduce DiffGraph's LoRA merge exactly. Several checkpoints cannot be merged on the
    fly there: the ``Model`` line then names the merged file (`diffgraph generate
    --save-merged`), and a comment gives the Checkpoint Merger weights.
    """
    tags = " ".join(
        f"<lora:{_lora_name(e.path, e.name)}:{e.merge_weight:.4g}>" for e in recipe.loras
    )
    lines = [f"{recipe.final_prompt} {tags}".strip()]
    if recipe.negative_prompt:
        lines.append(f"Negative prompt: {recipe.negative_prompt}")
    lines.append(
        f"Steps: {recipe.steps}, Sampler: Euler, CFG scale: {recipe.guidance:g}, "
        f"Seed: {recipe.seed}, Size: {recipe.width}x{recipe.height}, "
        f"Model: {Path(recipe.checkpoint_name()).stem}"
    )
    if len(recipe.checkpoints) > 1:
        weights = ", ".join(
            f"{_lora_name(e.path, e.name)} {e.merge_weight:.4g}" for e in recipe.checkpoints
        )
        lines.append(f"# checkpoint merge (weighted sum): {weights}")
    return "\n".join(lines)


def to_comfyui(recipe: Recipe) -> dict[str, Any]:
    """A ComfyUI workflow in API format: checkpoint merge + LoRA loaders + sampler.

    Checkpoints are chained with ``ModelMergeSimple`` / ``CLIPMergeSimple``: merging the
    running sum (weight ``S_{i-1}``) with checkpoint ``i`` at ratio ``S_{i-1} / S_i``
    gives ``Σ w_i·W_i / Σ w_i``, which is DiffGraph's merge when the weights sum to 1.
    """
    nodes: dict[str, dict[str, Any]] = {}

    def add(class_type: str, **inputs: Any) -> list[Any]:
        node_id = str(len(nodes) + 1)
        nodes[node_id] = {"class_type": class_type, "inputs": inputs}
        return [node_id, 0]

    checkpoints = recipe.checkpoints or []
    first = checkpoints[0] if checkpoints else None
    loader = add(
        "CheckpointLoaderSimple",
        ckpt_name=Path(first.path).name if first and first.path else recipe.checkpoint_name(),
    )
    model, clip, vae = loader, [loader[0], 1], [loader[0], 2]
    total = first.merge_weight if first else 1.0
    for expert in checkpoints[1:]:
        other = add("CheckpointLoaderSimple", ckpt_name=Path(expert.path or expert.name).name)
        ratio = total / (total + expert.merge_weight)
        model = add("ModelMergeSimple", model1=model, model2=other, ratio=ratio)
        clip = add("CLIPMergeSimple", clip1=clip, clip2=[other[0], 1], ratio=ratio)
        total += expert.merge_weight
    for expert in recipe.loras:
        lora = add(
            "LoraLoader",
            model=model,
            clip=clip,
            lora_name=Path(expert.path).name if expert.path else expert.name,
            strength_model=expert.merge_weight,
            strength_clip=expert.merge_weight,
        )
        model, clip = lora, [lora[0], 1]
    positive = add("CLIPTextEncode", clip=clip, text=recipe.final_prompt)
    negative = add("CLIPTextEncode", clip=clip, text=recipe.negative_prompt)
    latent = add("EmptyLatentImage", width=recipe.width, height=recipe.height, batch_size=1)
    sampled = add(
        "KSampler",
        model=model,
        positive=positive,
        negative=negative,
        latent_image=latent,
        seed=recipe.seed,
        steps=recipe.steps,
        cfg=recipe.guidance,
        sampler_name=SAMPLER,
        scheduler=SCHEDULER,
        denoise=1.0,
    )
    image = add("VAEDecode", samples=sampled, vae=vae)
    add("SaveImage", images=image, filename_prefix="diffgraph")
    return nodes
