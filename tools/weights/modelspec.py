"""The metadata a merged single file carries, as A1111, ComfyUI, Civitai and kohya read it.

Kept from the inputs: the checkpoints' kohya ``ss_*`` and SAI ``modelspec.*`` fields (the
first checkpoint wins; those that describe one input — title, date, hash, thumbnail — are
replaced), so e.g. ``modelspec.prediction_type`` / ``modelspec.predict_key`` (ComfyUI) and
``modelspec.resolution`` survive. Every input's ``ss_*`` / ``modelspec.*`` also stays,
per input, under ``diffgraph_inputs`` (LoRA training metadata would mislabel a checkpoint
at the top level). Written for the merge: the SAI model spec 1.0.0 fields kohya's
``sai_model_spec.py`` writes (title, architecture, implementation, resolution, merged_from,
description), and the recipe as ``sd_merge_recipe`` (A1111's merger key).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from graph.records import BaseFamily

SGM = "https://github.com/Stability-AI/generative-models"
ARCHITECTURES = {
    BaseFamily.SD15: ("stable-diffusion-v1", SGM, "512x512"),
    BaseFamily.SDXL: ("stable-diffusion-xl-v1-base", SGM, "1024x1024"),
    BaseFamily.FLUX1: ("flux-1-dev", "https://github.com/black-forest-labs/flux", "1024x1024"),
}
INHERITED = ("ss_", "modelspec.")
DESCRIBES_ONE_INPUT = frozenset(
    {
        "modelspec.title",
        "modelspec.date",
        "modelspec.hash_sha256",
        "modelspec.thumbnail",
        "modelspec.description",
        "modelspec.merged_from",
    }
)


def tool_fields(metadata: Mapping[str, str]) -> dict[str, str]:
    """The ``ss_*`` and ``modelspec.*`` fields of a file's metadata."""
    return {k: v for k, v in metadata.items() if k.startswith(INHERITED)}


def input_title(label: str, metadata: Mapping[str, str]) -> str:
    return metadata.get("modelspec.title") or metadata.get("ss_output_name") or label


def merged_metadata(
    family: BaseFamily,
    title: str,
    recipe: Mapping[str, Any],
    checkpoints: Sequence[tuple[str, Mapping[str, str]]],
    loras: Sequence[tuple[str, Mapping[str, str]]],
) -> dict[str, str]:
    """Metadata of a merged checkpoint: inputs are ``(label, file metadata)`` pairs,
    checkpoints first-wins (the base last); ``recipe`` is what made the weights."""
    out: dict[str, str] = {}
    for _, metadata in reversed(checkpoints):
        out.update((k, v) for k, v in tool_fields(metadata).items() if k not in DESCRIBES_ONE_INPUT)
    architecture, implementation, resolution = ARCHITECTURES[family]
    out.setdefault("modelspec.architecture", architecture)
    out.setdefault("modelspec.implementation", implementation)
    out.setdefault("modelspec.resolution", resolution)
    inputs = [("checkpoint", label, m) for label, m in checkpoints]
    inputs += [("lora", label, m) for label, m in loras]
    names = [input_title(label, m) for _, label, m in inputs]
    out.update(
        {
            "modelspec.sai_model_spec": "1.0.0",
            "modelspec.title": title,
            "modelspec.merged_from": ", ".join(names),
            "modelspec.description": f"DiffGraph merge ({recipe['method']}) of " + ", ".join(names),
            "sd_merge_recipe": json.dumps(recipe, sort_keys=True),
            "diffgraph_inputs": json.dumps(
                [
                    {"kind": kind, "name": name, "metadata": tool_fields(m)}
                    for (kind, _, m), name in zip(inputs, names, strict=True)
                ]
            ),
        }
    )
    return out
