"""Files written by diffusers and PEFT, applied by us, give the outputs their own loaders give."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.weights.conftest import randn
from tools.weights.adapter import Adapter, AdapterModule
from tools.weights.apply import apply_merge
from tools.weights.plan import MergePlan, WeightedExpert
from tools.weights.write import save_adapter


def unet_output(unet) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 8, 8, generator=generator)
    context = torch.randn(1, 5, unet.config.cross_attention_dim, generator=generator)
    with torch.no_grad():
        return unet(sample, torch.tensor([10]), encoder_hidden_states=context).sample


def text_output(text_encoder) -> torch.Tensor:
    with torch.no_grad():
        return text_encoder(torch.tensor([[1, 5, 9, 2, 0]])).last_hidden_state


def ours(pipe, path, coefficient=1.0):
    clean = copy.deepcopy(pipe)
    plan = MergePlan(loras=[WeightedExpert(path=path, coefficient=coefficient)], normalize="raw")
    apply_merge({"unet": clean.unet}, plan, backup="none")
    return clean


def diffusers_loaded(pipe, path, scale=1.0):
    loaded = copy.deepcopy(pipe)
    loaded.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name="x")
    loaded.set_adapters(["x"], adapter_weights=[scale])
    return loaded


def assert_same_outputs(a, b) -> None:
    torch.testing.assert_close(unet_output(a.unet), unet_output(b.unet), rtol=1e-4, atol=1e-5)


def diffusers_file(pipe, path, seed: int):
    """A UNet LoRA written by diffusers' own ``save_lora_weights``.

    UNet only: diffusers 0.42's text-encoder LoRA loader fails on transformers 5's CLIP
    (with or without the ``text_model.`` level), so text encoders are checked against PEFT.
    """
    from diffusers import StableDiffusionPipeline

    layers = {}
    for name, module in pipe.unet.named_modules():
        if isinstance(module, torch.nn.Linear) and name.endswith(("to_k", "to_out.0", "ff.net.2")):
            out, inp = module.weight.shape
            layers[f"{name}.lora_A.weight"] = randn(3, inp, seed=seed) * 0.2
            layers[f"{name}.lora_B.weight"] = randn(out, 3, seed=seed + 1) * 0.2
            seed += 2
    StableDiffusionPipeline.save_lora_weights(
        path.parent, unet_lora_layers=layers, weight_name=path.name
    )
    return path


def test_diffusers_save_lora_weights_file(tiny_pipe, tmp_path):
    path = diffusers_file(tiny_pipe, tmp_path / "d.safetensors", seed=0)
    reference = diffusers_loaded(tiny_pipe, path, 0.7)
    assert not torch.allclose(unet_output(reference.unet), unet_output(tiny_pipe.unet))
    assert_same_outputs(ours(tiny_pipe, path, 0.7), reference)


def test_kohya_file_with_alpha_and_conv_layers(tiny_pipe, tmp_path):
    unet = tiny_pipe.unet
    modules = {}
    for i, name in enumerate(
        (
            "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
            "down_blocks.1.attentions.1.transformer_blocks.0.ff.net.2",
            "down_blocks.0.attentions.0.proj_in",
            "up_blocks.1.resnets.0.conv1",
        )
    ):
        shape = unet.get_submodule(name).weight.shape
        conv = len(shape) == 4
        up = randn(shape[0], 4, *((1, 1) if conv else ()), seed=i) * 0.1
        down = randn(4, *shape[1:], seed=100 + i) * 0.1
        modules[f"unet.{name}"] = AdapterModule("lora", {"up": up, "down": down}, alpha=2.0)
    path = save_adapter(Adapter("locon", None, modules), tmp_path / "kohya.safetensors")
    assert_same_outputs(ours(tiny_pipe, path), diffusers_loaded(tiny_pipe, path))


def test_peft_save_pretrained_folder(tiny_pipe, tmp_path):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=4,
        lora_alpha=6,
        target_modules=["to_q", "to_v", "proj_out"],
        rank_pattern={"to_v": 2},
        alpha_pattern={"proj_out": 1},
        init_lora_weights=False,
    )
    torch.manual_seed(0)
    peft_unet = get_peft_model(copy.deepcopy(tiny_pipe.unet), config)
    peft_unet.save_pretrained(tmp_path / "peft")
    assert (tmp_path / "peft" / "adapter_config.json").is_file()
    clean = copy.deepcopy(tiny_pipe)
    plan = MergePlan(
        loras=[WeightedExpert(path=tmp_path / "peft", coefficient=1.0)], normalize="raw"
    )
    merged = apply_merge({"unet": clean.unet}, plan, backup="none")
    assert merged.lora_modules["peft"] == sum(
        1 for n, _ in tiny_pipe.unet.named_modules() if n.endswith(("to_q", "to_v", "proj_out"))
    )
    torch.testing.assert_close(
        unet_output(clean.unet), unet_output(peft_unet), rtol=1e-4, atol=1e-5
    )


def test_peft_text_encoder_folder(tiny_pipe, tmp_path):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=2, lora_alpha=5, target_modules=["q_proj", "fc2"], init_lora_weights=False
    )
    torch.manual_seed(1)
    peft_text = get_peft_model(copy.deepcopy(tiny_pipe.text_encoder), config)
    peft_text.save_pretrained(tmp_path / "peft-te")
    clean = copy.deepcopy(tiny_pipe)
    plan = MergePlan(
        loras=[WeightedExpert(path=tmp_path / "peft-te", coefficient=1.0)], normalize="raw"
    )
    merged = apply_merge({"text_encoder": clean.text_encoder}, plan, backup="none")
    assert merged.lora_modules["peft-te"] == 24
    torch.testing.assert_close(
        text_output(clean.text_encoder), text_output(peft_text), rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("weights", [(0.6, 0.4), (1.5, -0.5)])
def test_two_loras_raw_mode_matches_diffusers_set_adapters(tiny_pipe, tmp_path, weights):
    a = diffusers_file(tiny_pipe, tmp_path / "a.safetensors", seed=0)
    b = diffusers_file(tiny_pipe, tmp_path / "b.safetensors", seed=500)
    reference = copy.deepcopy(tiny_pipe)
    reference.load_lora_weights(str(a.parent), weight_name=a.name, adapter_name="a")
    reference.load_lora_weights(str(b.parent), weight_name=b.name, adapter_name="b")
    reference.set_adapters(["a", "b"], adapter_weights=list(weights))
    clean = copy.deepcopy(tiny_pipe)
    plan = MergePlan(
        loras=[
            WeightedExpert(path=a, coefficient=weights[0]),
            WeightedExpert(path=b, coefficient=weights[1]),
        ],
        normalize="raw",
    )
    apply_merge({"unet": clean.unet}, plan, backup="none")
    assert_same_outputs(clean, reference)
