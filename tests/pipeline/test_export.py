"""A1111 prompt and ComfyUI workflow exports reproduce the recipe's merge."""

from __future__ import annotations

import pytest

from agents.pipeline.export import to_a1111, to_comfyui
from agents.pipeline.recipe import Recipe, RecipeExpert


def recipe(checkpoints=3) -> Recipe:
    weights = [0.5, 0.3, 0.2][:checkpoints]
    return Recipe(
        prompt="a red-haired woman, watercolor",
        final_prompt="a red-haired woman, watercolor, wcstyle",
        negative_prompt="blurry",
        seed=7,
        steps=25,
        guidance=7.5,
        width=512,
        height=768,
        family="sd15",
        checkpoints=[
            RecipeExpert(
                name=f"c{i}",
                kind="ckpt",
                coefficient=0.5,
                merge_weight=w,
                path=f"/models/ckpt{i}.safetensors",
            )
            for i, w in enumerate(weights)
        ],
        loras=[
            RecipeExpert(
                name="Watercolor",
                kind="peft",
                coefficient=0.7,
                merge_weight=0.6,
                path="/models/Lora/watercolor_v2.safetensors",
                trigger_words=["wcstyle"],
            ),
            RecipeExpert(
                name="Red hair",
                kind="peft",
                coefficient=0.4,
                merge_weight=0.4,
                path="/models/Lora/red hair.safetensors",
            ),
        ],
        planner="vgae",
        selection_mode="no-llm",
    )


def test_a1111_prompt_and_parameters():
    one = recipe(1).model_copy(update={"sampler": "DPM++ 2M", "schedule_type": "Karras"})
    one.checkpoints[0].sha256 = "ab" * 32
    one.loras[0].addnet_hash = "cd" * 32
    assert to_a1111(one) == (
        "a red-haired woman, watercolor, wcstyle <lora:watercolor_v2:0.6> <lora:red hair:0.4>\n"
        "Negative prompt: blurry\n"
        "Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 7, "
        'Size: 512x768, Model hash: ababababab, Model: ckpt0, Lora hashes: "watercolor_v2: '
        'cdcdcdcdcdcd"'
    )
    text = to_a1111(recipe(3))
    *_, last = text.splitlines()  # one parameters line, the merge inside it
    assert last.startswith("Steps: 25, CFG scale: 7.5")  # no sampler claimed when unknown
    assert "Model: diffgraph-merged" in last and "Model hash" not in last
    assert last.endswith('DiffGraph checkpoint merge: "ckpt0 0.5, ckpt1 0.3, ckpt2 0.2"')


def _effective_checkpoint_weights(workflow) -> dict[str, float]:
    """Evaluate the ModelMergeSimple chain: output = ratio·model1 + (1-ratio)·model2."""

    def weights(ref):
        node = workflow[ref[0]]
        if node["class_type"] == "CheckpointLoaderSimple":
            return {node["inputs"]["ckpt_name"]: 1.0}
        if node["class_type"] == "LoraLoader":
            return weights(node["inputs"]["model"])
        r = node["inputs"]["ratio"]
        out = {k: r * v for k, v in weights(node["inputs"]["model1"]).items()}
        for k, v in weights(node["inputs"]["model2"]).items():
            out[k] = out.get(k, 0.0) + (1 - r) * v
        return out

    sampler = next(n for n in workflow.values() if n["class_type"] == "KSampler")
    return weights(sampler["inputs"]["model"])


def test_comfyui_chain_reproduces_the_weighted_sum():
    workflow = to_comfyui(recipe(3))
    assert _effective_checkpoint_weights(workflow) == pytest.approx(
        {"ckpt0.safetensors": 0.5, "ckpt1.safetensors": 0.3, "ckpt2.safetensors": 0.2}
    )
    loras = [n["inputs"] for n in workflow.values() if n["class_type"] == "LoraLoader"]
    assert [(lo["lora_name"], lo["strength_model"]) for lo in loras] == [
        ("watercolor_v2.safetensors", 0.6),
        ("red hair.safetensors", 0.4),
    ]
    sampler = next(n for n in workflow.values() if n["class_type"] == "KSampler")["inputs"]
    assert (sampler["seed"], sampler["steps"], sampler["cfg"]) == (7, 25, 7.5)
    # every reference points at an existing node
    for node in workflow.values():
        for value in node["inputs"].values():
            if isinstance(value, list):
                assert value[0] in workflow
