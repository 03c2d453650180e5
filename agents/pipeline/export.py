"""Recipes in the formats users already run: an A1111 prompt and a ComfyUI workflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agents.pipeline.recipe import Recipe

SAMPLER = "euler"
SCHEDULER = "normal"


def _lora_name(path: str | None, fallback: str) -> str:
    return Path(path).stem if path else fallback


def a1111_quote(value: object) -> str:
    """A parameter value as A1111 writes it: JSON-quoted when it holds ``,`` ``:`` or a
    line break (``infotext_utils.quote``)."""
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def to_a1111(recipe: Recipe) -> str:
    """A1111's infotext, exactly: the prompt with ``<lora:name:weight>`` tags, a
    ``Negative prompt:`` line, and one parameters line (what A1111's "PNG Info" and
    Civitai read from a PNG's ``parameters`` chunk).

    A1111 applies ``W + Σ m·ΔW`` with ``m`` the tag's multiplier, so the merge weights
    reproduce DiffGraph's LoRA merge exactly. ``Sampler`` names the scheduler the pipeline
    ran; ``Model hash`` (the first 10 digits of the checkpoint's SHA-256) and ``Lora
    hashes`` (each LoRA's A1111 hash, as Civitai reads it) let both find the files. Several
    checkpoints cannot be merged on the fly there: ``Model`` then names the merged file
    (`diffgraph generate --save-merged`) and ``DiffGraph checkpoint merge`` gives the
    Checkpoint Merger weights, inside the parameters line.
    """
    tags = " ".join(
        f"<lora:{_lora_name(e.path, e.name)}:{e.merge_weight:.4g}>" for e in recipe.loras
    )
    lines = [f"{recipe.final_prompt} {tags}".strip()]
    if recipe.negative_prompt:
        lines.append(f"Negative prompt: {recipe.negative_prompt}")
    params: dict[str, object] = {"Steps": recipe.steps}
    if recipe.sampler:
        params["Sampler"] = recipe.sampler
    if recipe.schedule_type:
        params["Schedule type"] = recipe.schedule_type
    params |= {
        "CFG scale": f"{recipe.guidance:g}",
        "Seed": recipe.seed,
        "Size": f"{recipe.width}x{recipe.height}",
    }
    model_sha = recipe.checkpoint_sha256()
    if model_sha:
        params["Model hash"] = model_sha[:10]
    params["Model"] = Path(recipe.checkpoint_name()).stem
    hashes = [f"{_alias(e)}: {e.addnet_hash[:12]}" for e in recipe.loras if e.addnet_hash]
    if hashes:
        params["Lora hashes"] = ", ".join(hashes)
    if len(recipe.checkpoints) > 1:
        params["DiffGraph checkpoint merge"] = ", ".join(
            f"{_lora_name(e.path, e.name)} {e.merge_weight:.4g}" for e in recipe.checkpoints
        )
    lines.append(", ".join(f"{k}: {a1111_quote(v)}" for k, v in params.items()))
    return "\n".join(lines)


def _alias(expert) -> str:
    """The name A1111 writes in ``Lora hashes`` (the tag's name without ``:`` and ``,``)."""
    return _lora_name(expert.path, expert.name).replace(":", "").replace(",", "")


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
