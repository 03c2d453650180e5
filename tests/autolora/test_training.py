"""Fusion training (only the gates change), diffusion losses, checkpoints of both models."""

from __future__ import annotations

import json
import types

import pytest
import torch

from tools.autolora.checkpoint import load_encoder, load_gates, save_encoder, save_gates
from tools.autolora.config import FusionTrainConfig, TrainingRecord
from tools.autolora.errors import AutoLoRACheckpointError, FusionError, TrainingDataError
from tools.autolora.fusion_training import (
    FusionLora,
    FusionPairs,
    FusionTrainer,
    check_trainable,
    gate_config,
)
from tools.autolora.gates import GateBank
from tools.autolora.losses import (
    flow_matching_inputs,
    flow_matching_loss,
    mse,
    noise_prediction_target,
)
from tools.autolora.tokens import lora_layers
from tools.tiny.experts import tiny_lora_adapter


def _pairs(seed: int, caption: str, n: int = 3) -> FusionPairs:
    images = torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    return FusionPairs(images, [caption] * n, "test pairs")


def _snapshot(pipe, loras) -> dict[str, torch.Tensor]:
    tensors = {}
    for component in ("unet", "text_encoder", "vae"):
        for name, value in getattr(pipe, component).state_dict().items():
            tensors[f"{component}.{name}"] = value.clone()
    for lora in loras:
        for name, module in lora.adapter.modules.items():
            for factor, value in module.factors.items():
                tensors[f"{lora.id}.{name}.{factor}"] = value.clone()
    return tensors


def test_a_training_step_changes_only_the_gates(pipe):
    loras = [
        FusionLora("a", tiny_lora_adapter(pipe, 1), _pairs(0, "a red cat")),
        FusionLora("b", tiny_lora_adapter(pipe, 2, rank=2), _pairs(1, "a blue dog")),
        FusionLora("c", tiny_lora_adapter(pipe, 3, components=("unet",)), _pairs(2, "a tree")),
    ]
    gates = GateBank(gate_config(pipe, [lora.adapter for lora in loras], global_rank=4))
    assert len(gates.names) == 176
    before_gates = {k: v.clone() for k, v in gates.named_tensors().items()}
    before = _snapshot(pipe, loras)
    flags = [p.requires_grad for p in pipe.unet.parameters()]
    trainer = FusionTrainer(pipe, loras, gates, FusionTrainConfig(steps=2, batch_size=2, lr=1e-2))
    losses = trainer.train()
    assert len(losses) == 2 and all(loss > 0 for loss in losses)
    after = _snapshot(pipe, loras)
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert [p.requires_grad for p in pipe.unet.parameters()] == flags
    assert all(p.grad is None for p in pipe.unet.parameters())
    changed = [k for k, v in gates.named_tensors().items() if not torch.equal(v, before_gates[k])]
    assert changed and {k.rsplit(".", 1)[1] for k in changed} == {
        "w_base",
        "w_lora",
        "w_cross",
        "bias",
        "scale",
    }
    assert not any(m._forward_hooks for m in pipe.unet.modules())


def test_training_needs_two_loras_and_an_sd15_pipeline(pipe):
    lora = FusionLora("a", tiny_lora_adapter(pipe, 1), _pairs(0, "a cat"))
    gates = GateBank(gate_config(pipe, [lora.adapter], global_rank=0))
    with pytest.raises(TrainingDataError, match="at least 2 LoRAs"):
        FusionTrainer(pipe, [lora], gates, FusionTrainConfig())
    flux = types.SimpleNamespace(transformer=object(), unet=None)
    with pytest.raises(FusionError, match="flow-matching loss exists"):
        check_trainable(flux)
    with pytest.raises(TrainingDataError, match="2 images for 3 captions"):
        FusionPairs(torch.zeros(2, 3, 8, 8), ["a", "b", "c"], "bad folder")


def test_noise_prediction_targets():
    from diffusers import DDPMScheduler

    g = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    timesteps = torch.tensor([10, 500])
    eps = DDPMScheduler(prediction_type="epsilon")
    assert noise_prediction_target(eps, latents, noise, timesteps) is noise
    v = DDPMScheduler(prediction_type="v_prediction")
    alpha = v.alphas_cumprod[timesteps].sqrt().reshape(-1, 1, 1, 1)
    sigma = (1 - v.alphas_cumprod[timesteps]).sqrt().reshape(-1, 1, 1, 1)
    expected = alpha * noise - sigma * latents
    assert torch.allclose(noise_prediction_target(v, latents, noise, timesteps), expected)


def test_flow_matching_loss_is_rectified_flow():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 16, 4, 4, generator=g), torch.randn(3, 16, 4, 4, generator=g)
    sigmas = torch.tensor([0.0, 0.25, 1.0])
    noisy, target = flow_matching_inputs(x0, eps, sigmas)
    assert torch.equal(noisy[0], x0[0]) and torch.equal(noisy[2], eps[2])
    assert torch.allclose(noisy[1], 0.75 * x0[1] + 0.25 * eps[1])
    assert torch.equal(target, eps - x0)
    assert flow_matching_loss(eps - x0, x0, eps, sigmas) == 0
    prediction = torch.zeros_like(x0)
    assert torch.allclose(flow_matching_loss(prediction, x0, eps, sigmas), ((eps - x0) ** 2).mean())
    weights = torch.tensor([1.0, 0.0, 2.0])
    per_sample = ((eps - x0) ** 2).flatten(1).mean(1)
    weighted = flow_matching_loss(prediction, x0, eps, sigmas, weights)
    assert torch.allclose(weighted, (weights * per_sample).mean())
    assert torch.allclose(mse(prediction, target), ((eps - x0) ** 2).mean())


def test_gate_checkpoints_store_their_config(pipe, tmp_path):
    adapters = [tiny_lora_adapter(pipe, 1)]
    gates = GateBank(gate_config(pipe, adapters, global_rank=2))
    with torch.no_grad():
        gates.gates[3].bias.fill_(0.25)
    record = TrainingRecord(steps=3, loras=["a"], data="test", demo=True, first_loss=1.0)
    path = save_gates(tmp_path / "fusion.safetensors", gates, record)
    loaded, got = load_gates(path)
    assert loaded.config == gates.config and loaded.config.global_rank == 2
    assert got == record
    tensors = loaded.named_tensors()
    assert all(torch.equal(v, tensors[k]) for k, v in gates.named_tensors().items())
    from tools.weights.files import read_metadata

    metadata = read_metadata(path)
    assert metadata["format"] == "diffgraph-autolora-fusion"
    assert json.loads(metadata["config"])["layers"] == gates.config.layers
    from tools.autolora.fusion import gated_fusion

    with gated_fusion(pipe, adapters, path) as handle:  # loaded from the file
        assert handle.demo and not handle.missing_gates and len(handle.layers) == 176


def test_encoder_checkpoints_round_trip(trained, synthetic, tmp_path):
    record = TrainingRecord(steps=200, loras=["x"], data="synthetic", demo=True)
    path = save_encoder(tmp_path / "encoder.safetensors", trained.encoder, record)
    encoder, got = load_encoder(path)
    assert encoder.config == trained.encoder.config and got.demo
    loras = [lora_layers(s.adapter) for s in synthetic[1][:4]]
    assert torch.equal(encoder.embed(loras), trained.encoder.embed(loras))


def test_bad_checkpoints_are_explained(pipe, tmp_path):
    with pytest.raises(AutoLoRACheckpointError, match="train-autolora encoder"):
        load_encoder(tmp_path / "missing.safetensors")
    gates = GateBank(gate_config(pipe, [tiny_lora_adapter(pipe, 1)], global_rank=2))
    path = save_gates(tmp_path / "fusion.safetensors", gates, TrainingRecord())
    with pytest.raises(
        AutoLoRACheckpointError, match="is not a diffgraph-autolora-encoder checkpoint"
    ):
        load_encoder(path)
    lora = tmp_path / "lora.safetensors"
    from tools.tiny import make_tiny_lora

    make_tiny_lora(pipe, lora, seed=1)
    with pytest.raises(
        AutoLoRACheckpointError, match="is not a diffgraph-autolora-fusion checkpoint"
    ):
        load_gates(lora)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......")
    with pytest.raises(AutoLoRACheckpointError, match="not a readable safetensors"):
        load_gates(broken)


def test_pairs_from_a_folder(tmp_path):
    from PIL import Image

    from tools.autolora.fusion_training import folder_pairs

    red = Image.new("RGB", (40, 30), (255, 0, 0))
    red.save(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("a red square\n")
    Image.new("L", (16, 16), 128).save(tmp_path / "b.jpg")
    (tmp_path / "b.txt").write_text("grey")
    Image.new("RGB", (8, 8)).save(tmp_path / "no-caption.png")
    pairs = folder_pairs(tmp_path, 32)
    assert pairs.captions == ["a red square", "grey"] and pairs.images.shape == (2, 3, 32, 32)
    assert torch.equal(pairs.images[0, 0], torch.ones(32, 32))
    assert not pairs.images[0, 1:].any() and not pairs.demo
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TrainingDataError, match="has no image with a caption"):
        folder_pairs(empty, 32)
