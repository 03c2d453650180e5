"""The tiny SD 1.5 backend: real architecture and key names, deterministic, round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from tools.tiny import build_tiny_sd15, build_tiny_tokenizer, make_tiny_checkpoint, make_tiny_lora

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "generation"


def _generate(pipe, prompt="a cat", seed=1):
    return pipe(
        prompt,
        num_inference_steps=2,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(seed),
        output_type="pt",
    ).images


def test_tokenizer_spells_known_words_whole():
    tokenizer = build_tiny_tokenizer()
    ids = tokenizer("A Cat, portrait").input_ids
    assert tokenizer.convert_ids_to_tokens(ids) == [
        "<|startoftext|>",
        "a</w>",
        "cat</w>",
        ",</w>",
        "portrait</w>",
        "<|endoftext|>",
    ]
    assert tokenizer("x", padding="max_length").input_ids.__len__() == 77


def test_build_is_deterministic_in_the_seed(tiny_sd15):
    same = build_tiny_sd15(seed=0).unet.state_dict()
    other = build_tiny_sd15(seed=1).unet.state_dict()
    base = tiny_sd15.unet.state_dict()
    assert all(torch.equal(base[k], same[k]) for k in base)
    assert not torch.equal(base["conv_in.weight"], other["conv_in.weight"])


def test_same_seed_same_image_and_shape(tiny_sd15):
    first, second = _generate(tiny_sd15), _generate(tiny_sd15)
    assert first.shape == (1, 3, 64, 64)
    assert torch.equal(first, second)
    assert not torch.equal(first, _generate(tiny_sd15, seed=2))


def test_single_file_has_exactly_the_real_sd15_key_names(tiny_sd15_files):
    real = {
        line
        for line in (FIXTURES / "sd15_ldm_keys.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    with safe_open(str(tiny_sd15_files.single_file), "pt") as handle:
        keys = set(handle.keys())
        assert "tiny random weights" in handle.metadata()["diffgraph_demo"]
    assert keys == real


def test_single_file_and_folder_load_back_exactly(tiny_sd15, tiny_sd15_files):
    from diffusers import StableDiffusionPipeline

    from_single = tiny_sd15_files.load_single_file()
    from_folder = StableDiffusionPipeline.from_pretrained(tiny_sd15_files.folder)
    for loaded in (from_single, from_folder):
        for name in ("unet", "vae", "text_encoder"):
            want = getattr(tiny_sd15, name).state_dict()
            got = getattr(loaded, name).state_dict()
            assert want.keys() == got.keys()
            assert all(torch.equal(want[k], got[k]) for k in want), name
    # same weights; convolution kernels may pick a different summation order for new tensors
    torch.testing.assert_close(_generate(from_single), _generate(tiny_sd15), atol=1e-5, rtol=0)


def test_checkpoint_expert_is_a_seeded_perturbation(tiny_sd15, tmp_path):
    before = {k: v.clone() for k, v in tiny_sd15.unet.state_dict().items()}
    a = make_tiny_checkpoint(tiny_sd15, tmp_path / "a.safetensors", seed=3)
    b = make_tiny_checkpoint(tiny_sd15, tmp_path / "b.safetensors", seed=3)
    c = make_tiny_checkpoint(tiny_sd15, tmp_path / "c.safetensors", seed=4)
    assert all(torch.equal(before[k], v) for k, v in tiny_sd15.unet.state_dict().items())
    key = "model.diffusion_model.input_blocks.1.1.proj_in.weight"
    vae_key = "first_stage_model.decoder.conv_in.weight"
    with (
        safe_open(str(a), "pt") as fa,
        safe_open(str(b), "pt") as fb,
        safe_open(str(c), "pt") as fc,
    ):
        assert torch.equal(fa.get_tensor(key), fb.get_tensor(key))
        assert not torch.equal(fa.get_tensor(key), fc.get_tensor(key))
        assert not torch.equal(
            fa.get_tensor(key), before["down_blocks.0.attentions.0.proj_in.weight"]
        )
        assert torch.equal(
            fa.get_tensor(vae_key), tiny_sd15.vae.state_dict()["decoder.conv_in.weight"]
        )


def test_diffusers_checkpoint_expert_folder(tiny_sd15, tmp_path):
    from diffusers import StableDiffusionPipeline

    folder = make_tiny_checkpoint(tiny_sd15, tmp_path / "expert", seed=3, format="diffusers")
    single = make_tiny_checkpoint(tiny_sd15, tmp_path / "expert.safetensors", seed=3)
    loaded = StableDiffusionPipeline.from_pretrained(folder)
    with safe_open(str(single), "pt") as handle:
        want = handle.get_tensor("model.diffusion_model.out.2.weight")
    assert torch.equal(loaded.unet.state_dict()["conv_out.weight"], want)


def test_diffusers_lora_loads_with_diffusers_and_changes_the_image(tiny_sd15, tmp_path):
    import copy

    path = make_tiny_lora(
        tiny_sd15, tmp_path / "lora.safetensors", seed=5, rank=4, trigger_words=["zzstyle"]
    )
    with safe_open(str(path), "pt") as handle:
        keys = list(handle.keys())
        assert "zzstyle" in handle.metadata()["ss_tag_frequency"]
    assert any(k.startswith("unet.") and k.endswith("to_q.lora_A.weight") for k in keys)
    assert any(k.startswith("text_encoder.") and k.endswith("q_proj.lora_B.weight") for k in keys)
    # diffusers 0.42 cannot place text-encoder LoRAs on transformers 5's CLIPTextModel
    # (it dropped the text_model level): check diffusers' own loading on the UNet part.
    make_tiny_lora(tiny_sd15, tmp_path / "unet.safetensors", seed=5, components=("unet",))
    pipe = copy.deepcopy(tiny_sd15)
    pipe.load_lora_weights(str(tmp_path), weight_name="unet.safetensors", adapter_name="x")
    assert not torch.equal(_generate(pipe), _generate(tiny_sd15))


def test_kohya_lora_has_kohya_names(tiny_sd15, tmp_path):
    path = make_tiny_lora(tiny_sd15, tmp_path / "k.safetensors", seed=1, rank=2, format="kohya")
    with safe_open(str(path), "pt") as handle:
        keys = set(handle.keys())
        alpha = handle.get_tensor(
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.alpha"
        )
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight" in keys
    assert float(alpha) == 2.0


@pytest.mark.parametrize("fmt", ["diffusers", "kohya"])
def test_lora_is_deterministic_in_the_seed(tiny_sd15, tmp_path, fmt):
    paths = [
        make_tiny_lora(tiny_sd15, tmp_path / f"{name}.safetensors", seed=seed, format=fmt)
        for name, seed in (("a", 1), ("b", 1), ("c", 2))
    ]
    tensors = []
    for path in paths:
        with safe_open(str(path), "pt") as handle:
            keys = handle.keys()
            tensors.append({k: handle.get_tensor(k) for k in keys})
    a, b, c = tensors
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if "alpha" not in k)
