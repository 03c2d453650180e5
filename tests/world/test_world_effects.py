"""The shipped small world has real effects: the judge sees what the experts do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tools.world import WORLD_DIR
from tools.world.evaluate import GUIDANCE, STEPS, load_world_judge, lora_plan
from tools.world.experts import EXPERTS
from tools.world.prompts import EVAL_SEED, attribute_prompts
from tools.world.scene import render
from tools.world.vocab import ATTRIBUTES


@pytest.fixture(scope="module")
def generator():
    from tools.generation.generator import Generator

    return Generator.from_path(WORLD_DIR / "base", max_batch=16)


@pytest.fixture(scope="module")
def judge():
    return load_world_judge(WORLD_DIR / "judge.safetensors")


def _generate(generator, prompts, plan=None) -> torch.Tensor:
    from tools.generation.request import GenerationRequest

    request = GenerationRequest(
        prompts=prompts, steps=STEPS, guidance=GUIDANCE, seed=11, width=32, height=32
    )
    return generator.generate(request, plan).images


def _found(judge, images, attribute: str, value: str) -> float:
    probs = judge.probabilities(images)[attribute].argmax(-1)
    return float((probs == ATTRIBUTES[attribute].index(value)).float().mean())


def test_merging_a_lora_changes_the_images_and_restore_undoes_it_exactly(generator, judge):
    spec = next(s for s in EXPERTS if s.attribute == ("background", "grid"))
    prompts = [p for p, _ in attribute_prompts("background", "grid", 8, seed=EVAL_SEED + 13)]
    before = _generate(generator, prompts)
    merged = _generate(generator, prompts, lora_plan(WORLD_DIR / "experts" / spec.file_name, spec))
    after = _generate(generator, prompts)
    assert _found(judge, before, "background", "grid") <= 0.25  # the base never learnt grids
    assert (merged - before).abs().mean() > 0.02
    assert torch.equal(after, before)  # the merge is undone exactly


def test_the_judge_scores_prompts_its_image_matches_higher(judge):
    from tools.scorers.world_judge import WorldJudgeScorer
    from tools.world.scene import Scene

    scenes = [Scene("star", "red", "stripes", "neon", seed=1), Scene("circle", "blue", seed=2)]
    images = torch.from_numpy(np.stack([render(s) for s in scenes])).permute(0, 3, 1, 2) / 255
    scorer = WorldJudgeScorer(judge)
    right = scorer._score(images, ["red star, striped background, neon style", "blue circle"])
    wrong = scorer._score(images, ["blue circle, sketch style", "red star on a checkerboard"])
    assert (right["world_judge"] > 0.7).all() and (wrong["world_judge"] < 0.3).all()
