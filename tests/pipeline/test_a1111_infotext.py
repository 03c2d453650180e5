"""The A1111 export read back with A1111's own parsing rule (``parse_generation_parameters``
of stable-diffusion-webui ``modules/infotext_utils.py``, its regex logic re-implemented)."""

from __future__ import annotations

import json
import re

import pytest
import torch

from agents.pipeline.export import to_a1111
from agents.pipeline.pipeline import save_images
from agents.pipeline.recipe import Recipe, RecipeExpert
from graph.records import BaseFamily
from tools.generation.samplers import a1111_sampler

# A1111's regexes, verbatim
RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
RE_IMAGESIZE = re.compile(r"^(\d+)x(\d+)$")


def _unquote(text: str) -> str:
    if len(text) == 0 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except Exception:
        return text


def parse_generation_parameters(x: str) -> dict:
    """A1111's rule: the last line holds the parameters when it has 3 or more of them; the
    lines before are the prompt, then the negative prompt from ``Negative prompt:`` on."""
    res: dict = {}
    prompt, negative_prompt, done_with_prompt = "", "", False
    *lines, lastline = x.strip().split("\n")
    if len(RE_PARAM.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ""
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done_with_prompt = True
            line = line[16:].strip()
        if done_with_prompt:
            negative_prompt += ("" if negative_prompt == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    res["Prompt"], res["Negative prompt"] = prompt, negative_prompt
    for k, v in RE_PARAM.findall(lastline):
        if v[0] == '"' and v[-1] == '"':
            v = _unquote(v)
        m = RE_IMAGESIZE.match(v)
        if m is not None:
            res[f"{k}-1"], res[f"{k}-2"] = m.group(1), m.group(2)
        else:
            res[k] = v
    return res


def _recipe(checkpoints: int) -> Recipe:
    weights = [0.55, 0.45][:checkpoints]
    return Recipe(
        prompt="castle, dusk",
        final_prompt="a castle on a hill, at dusk: moody, cinematic",
        negative_prompt="blurry, lowres",
        seed=1234,
        steps=20,
        guidance=6.5,
        sampler="DPM++ 2M",
        schedule_type="Karras",
        width=768,
        height=512,
        family="sd15",
        base_model="/models/v1-5.safetensors",
        base_model_sha256="1" * 64,
        checkpoints=[
            RecipeExpert(
                name=f"ck{i}",
                kind="ckpt",
                coefficient=0.5,
                merge_weight=w,
                path=f"/m/Stable-diffusion/dream, v{i}.safetensors",
                sha256=f"{i}" * 64,
            )
            for i, w in enumerate(weights)
        ],
        loras=[
            RecipeExpert(
                name="Castle",
                kind="peft",
                coefficient=0.7,
                merge_weight=0.8,
                path="/m/Lora/castle_v2.safetensors",
                addnet_hash="a1b2c3d4e5f6" + "0" * 52,
            ),
            RecipeExpert(
                name="Mood",
                kind="peft",
                coefficient=0.3,
                merge_weight=0.25,
                path="/m/Lora/moody light.safetensors",
                addnet_hash="ffeeddccbbaa" + "1" * 52,
            ),
        ],
        planner="vgae",
        selection_mode="llm",
    )


@pytest.mark.parametrize("checkpoints", [0, 1, 2])
def test_every_parameter_survives_a1111_parsing(checkpoints):
    recipe = _recipe(checkpoints)
    parsed = parse_generation_parameters(to_a1111(recipe))
    assert parsed["Prompt"] == (
        "a castle on a hill, at dusk: moody, cinematic <lora:castle_v2:0.8> <lora:moody light:0.25>"
    )
    assert parsed["Negative prompt"] == "blurry, lowres"
    assert (parsed["Steps"], parsed["Sampler"], parsed["Schedule type"]) == (
        "20",
        "DPM++ 2M",
        "Karras",
    )
    assert (parsed["CFG scale"], parsed["Seed"]) == ("6.5", "1234")
    assert (parsed["Size-1"], parsed["Size-2"]) == ("768", "512")
    assert parsed["Lora hashes"] == "castle_v2: a1b2c3d4e5f6, moody light: ffeeddccbbaa"
    model, model_hash = {
        0: ("v1-5", "1111111111"),
        1: ("dream, v0", "0000000000"),
        2: ("diffgraph-merged", None),
    }[checkpoints]
    assert parsed["Model"] == model and parsed.get("Model hash") == model_hash
    if checkpoints == 2:
        merge = parsed["DiffGraph checkpoint merge"]
        assert merge == "dream, v0 0.55, dream, v1 0.45"


def test_the_png_carries_the_infotext_in_its_parameters_chunk(tmp_path):
    from PIL import Image

    text = to_a1111(_recipe(2))
    (path,) = save_images(torch.rand(1, 3, 8, 8), tmp_path, "castle", text)
    with Image.open(path) as image:
        stored = image.text["parameters"]  # what A1111's PNG Info and Civitai read
    assert stored == text
    assert parse_generation_parameters(stored)["Sampler"] == "DPM++ 2M"


def test_the_sampler_is_the_scheduler_that_ran():
    import diffusers

    euler = diffusers.EulerDiscreteScheduler()
    dpm = diffusers.DPMSolverMultistepScheduler(use_karras_sigmas=True)
    sde = diffusers.DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++")
    assert a1111_sampler(euler) == ("Euler", None)
    assert a1111_sampler(diffusers.EulerAncestralDiscreteScheduler()) == ("Euler a", None)
    assert a1111_sampler(dpm) == ("DPM++ 2M", "Karras")
    assert a1111_sampler(sde) == ("DPM++ 2M SDE", None)
    assert a1111_sampler(diffusers.PNDMScheduler()) == ("PLMS", None)
    assert a1111_sampler(diffusers.DDIMScheduler()) == ("DDIM", None)
    assert a1111_sampler(diffusers.UniPCMultistepScheduler()) == ("UniPC", None)
    # nothing claimed that did not run: an unknown scheduler keeps its own name
    assert a1111_sampler(diffusers.TCDScheduler()) == ("TCDScheduler", None)


def test_a_generated_recipe_names_the_pipeline_scheduler(tiny_sd15):
    from tools.generation.generator import Generator
    from tools.generation.loading import LoadedPipeline

    assert type(tiny_sd15.scheduler).__name__ == "DDIMScheduler"
    generator = Generator(LoadedPipeline(tiny_sd15, BaseFamily.SD15, True, "tiny"))
    assert generator.sampler == ("DDIM", None)
