"""The generator: validated requests, seeded images, merges applied and undone, loading."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from graph.records import BaseFamily
from tools.generation.errors import GenerationError, ModelLoadError
from tools.generation.generator import Generator
from tools.generation.loading import load_pipeline
from tools.generation.request import GenerationRequest
from tools.generation.triggers import with_trigger_words
from tools.tiny import make_tiny_checkpoint, make_tiny_lora
from tools.weights.plan import MergePlan, WeightedExpert

FAST = {"steps": 2, "width": 64, "height": 64, "guidance": 5.0}


@pytest.fixture(scope="module")
def generator(tiny_sd15_files):
    return Generator.from_path(tiny_sd15_files.folder, max_batch=8)


def _request(prompts=("a cat",), **kwargs) -> GenerationRequest:
    return GenerationRequest(prompts=list(prompts), **{**FAST, **kwargs})


def _state(module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize(
    "bad",
    [
        {"prompts": []},
        {"prompts": ["  "]},
        {"prompts": ["a"], "steps": 0},
        {"prompts": ["a"], "guidance": -1},
        {"prompts": ["a"], "images_per_prompt": 0},
        {"prompts": ["a"], "width": 8},
        {"prompts": ["a"], "sampler": "euler"},
    ],
)
def test_bad_requests_are_rejected_up_front(bad):
    with pytest.raises(ValidationError):
        GenerationRequest(**bad)


def test_size_must_fit_the_family():
    request = GenerationRequest(prompts=["a"], width=72)
    assert request.size(BaseFamily.SD15) == (72, 72)
    with pytest.raises(GenerationError, match="multiple of 16"):
        request.size(BaseFamily.FLUX1)
    assert GenerationRequest(prompts=["a"]).size(BaseFamily.SDXL) == (1024, 1024)


def test_same_request_same_images_and_seed_per_image(generator):
    request = _request(("a cat", "a dog"), images_per_prompt=2, seed=7)
    first = generator.generate(request)
    assert first.images.shape == (4, 3, 64, 64)
    assert first.images.min() >= 0 and first.images.max() <= 1
    assert first.seeds == [7, 8, 7, 8]
    assert first.prompts == ["a cat", "a cat", "a dog", "a dog"]
    assert first.demo is True
    assert torch.equal(first.images, generator.generate(request).images)
    # image 3 (a dog, seed 8) does not depend on its batch
    alone = generator.generate(_request(("a dog",), seed=8))
    torch.testing.assert_close(alone.images[0], first.images[3], atol=1e-5, rtol=0)
    assert not torch.allclose(first.images[2], first.images[3])


def test_batch_size_does_not_change_images(tiny_sd15_files, generator):
    one_at_a_time = Generator(generator.loaded, max_batch=1)
    request = _request(("a cat", "a dog"), images_per_prompt=2)
    torch.testing.assert_close(
        one_at_a_time.generate(request).images,
        generator.generate(request).images,
        atol=1e-5,
        rtol=0,
    )


def test_merge_plan_is_applied_for_the_call_and_undone(generator, tiny_sd15, tmp_path):
    lora = make_tiny_lora(tiny_sd15, tmp_path / "lora.safetensors", seed=3, strength=2.0)
    plan = MergePlan(loras=[WeightedExpert(path=lora, coefficient=1.0)], normalize="raw")
    unet, text = _state(generator.pipe.unet), _state(generator.pipe.text_encoder)
    request = _request()
    plain = generator.generate(request).images
    merged = generator.generate(request, plan=plan).images
    assert not torch.allclose(plain, merged, atol=1e-3)
    assert all(torch.equal(v, generator.pipe.unet.state_dict()[k]) for k, v in unet.items())
    assert all(torch.equal(v, generator.pipe.text_encoder.state_dict()[k]) for k, v in text.items())
    assert torch.equal(generator.generate(request).images, plain)


def test_checkpoint_plan_gives_the_experts_images(generator, tiny_sd15, tmp_path):
    expert = make_tiny_checkpoint(tiny_sd15, tmp_path / "expert.safetensors", seed=9, strength=0.3)
    plan = MergePlan(checkpoints=[WeightedExpert(path=expert, coefficient=0.4)])
    request = _request()
    merged = generator.generate(request, plan=plan).images
    direct = Generator.from_path(expert, config_dir=generator.loaded.source).generate(request)
    torch.testing.assert_close(merged, direct.images, atol=1e-4, rtol=0)


def test_trigger_words_are_added_once():
    assert with_trigger_words("a cat", ["zz style", "ZZ STYLE", " "]) == "zz style, a cat"
    assert with_trigger_words("zz style cat", ["zz style"]) == "zz style cat"
    assert with_trigger_words("a cat", ["zz"], "append") == "a cat, zz"
    assert with_trigger_words("a cat", ["zz"], "off") == "a cat"


def test_trigger_words_reach_the_prompt(generator):
    result = generator.generate(_request(), trigger_words=["zzstyle"])
    assert result.prompts == ["zzstyle, a cat"]
    assert not torch.equal(result.images, generator.generate(_request()).images)


def test_single_file_needs_its_configs_offline(tiny_sd15_files, tmp_path):
    loaded = load_pipeline(tiny_sd15_files.single_file, config_dir=tiny_sd15_files.folder)
    assert loaded.family == BaseFamily.SD15 and loaded.demo
    with pytest.raises(ModelLoadError, match=r"generation\.config_dir"):
        load_pipeline(tiny_sd15_files.single_file)
    with pytest.raises(ModelLoadError, match=r"model_index\.json"):
        load_pipeline(tiny_sd15_files.single_file, config_dir=tmp_path)


def test_bad_paths_are_named(tmp_path):
    from tools.weights.errors import PickleRefusedError

    with pytest.raises(ModelLoadError, match="does not exist"):
        load_pipeline(tmp_path / "missing.safetensors")
    (tmp_path / "model.ckpt").write_bytes(b"not really")
    with pytest.raises(PickleRefusedError):
        load_pipeline(tmp_path / "model.ckpt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ModelLoadError, match=r"model_index\.json"):
        load_pipeline(tmp_path / "folder")


def test_sdxl_folder(tiny_sdxl_folder):
    generator = Generator.from_path(tiny_sdxl_folder)
    assert generator.family == BaseFamily.SDXL and not generator.demo
    assert set(generator.components()) == {"unet", "text_encoder", "text_encoder_2"}
    request = _request(negative_prompt="blurry")
    images = generator.generate(request).images
    assert images.shape == (1, 3, 64, 64)
    assert torch.equal(images, generator.generate(request).images)


def test_flux_folder(tiny_flux_folder):
    generator = Generator.from_path(tiny_flux_folder)
    assert generator.family == BaseFamily.FLUX1
    assert set(generator.components()) == {"transformer", "text_encoder"}
    with pytest.raises(GenerationError, match="negative"):
        generator.generate(_request(negative_prompt="blurry"))
    images = generator.generate(_request(guidance=3.5)).images
    assert images.shape == (1, 3, 64, 64)
