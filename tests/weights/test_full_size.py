"""A kohya LoRA built from the real SD 1.5 key map, applied to a full-size SD 1.5 UNet.

Memory: the UNet (860 M parameters) and CLIP-L text encoder are built on the meta device
from the real configs and materialised in float16 (≈1.9 GB instead of ≈3.9 GB in float32)
with seeded random values (windows of one random pool: fast to fill); no backup is kept
(restore is proven on the tiny pipeline), so the test peaks under 3 GB.
"""

from __future__ import annotations

import pytest
import torch

from graph.records import BaseFamily
from tests.weights.conftest import keymap_shapes
from tools.weights.apply import apply_merge
from tools.weights.families import FAMILY_COMPONENTS, build_component, get_submodule
from tools.weights.plan import MergePlan, WeightedExpert


def random_full_size(kind: str, config: dict, seed: int) -> torch.nn.Module:
    """The model in float16, every tensor a seeded window of one pool of random values."""
    model = build_component(kind, config).to(torch.float16).to_empty(device="cpu")
    generator = torch.Generator().manual_seed(seed)
    largest = max(p.numel() for p in model.parameters())
    pool = torch.randn(largest + (1 << 20), generator=generator).mul_(0.02).to(torch.float16)
    with torch.no_grad():
        for param in model.parameters():
            start = int(torch.randint(0, 1 << 20, (), generator=generator))
            param.view(-1).copy_(pool[start : start + param.numel()])
    return model.eval()


def kohya_file_from_keymap(path) -> dict[str, tuple[int, ...]]:
    """Rank-1 LoRA/LoCon factors on every ≥2-D weight of the real kohya key map."""
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(7)
    state, modules = {}, {}
    for key, shape in keymap_shapes("sd1-kohya", ("diffuser", "clip_l")).items():
        if not key.endswith(".weight") or len(shape) < 2 or "embeddings" in key:
            continue
        component, module = key.removesuffix(".weight").split(".", 1)
        stem = f"lora_{component}_" + module.replace(".", "_")
        kernel = tuple(shape[2:])
        state[f"{stem}.lora_up.weight"] = torch.randn(
            shape[0], 1, *([1] * len(kernel)), generator=generator
        )
        state[f"{stem}.lora_down.weight"] = torch.randn(1, shape[1], *kernel, generator=generator)
        state[f"{stem}.alpha"] = torch.tensor(0.5)
        modules[("unet." if component == "unet" else "text_encoder.") + module] = shape
    save_file(state, str(path))
    return modules


@pytest.fixture(scope="module")
def full_size():
    configs = FAMILY_COMPONENTS[BaseFamily.SD15]
    return {
        "unet": random_full_size(*configs["unet"], seed=0),
        "text_encoder": random_full_size(*configs["text_encoder"], seed=1),
    }


def test_real_sd15_kohya_keys_apply_to_full_size_unet(full_size, tmp_path):
    path = tmp_path / "full.safetensors"
    modules = kohya_file_from_keymap(path)
    assert len(modules) > 350  # attention, projections, feed-forward, resnet convs, CLIP
    checked = {
        "unet.down_blocks.0.resnets.0.conv1": None,  # 3x3 conv (LoCon)
        "unet.mid_block.attentions.0.proj_in": None,  # 1x1 conv
        "unet.up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_k": None,  # 768 -> 320
        "text_encoder.text_model.encoder.layers.11.mlp.fc2": None,
    }
    for name in checked:
        checked[name] = get_submodule(full_size, name).weight.detach().clone()
    plan = MergePlan(loras=[WeightedExpert(path=path, coefficient=0.8)], normalize="raw")
    merged = apply_merge(full_size, plan, backup="none")
    assert merged.lora_modules == {"full.safetensors": len(modules)}
    assert len(merged.changed) == len(modules)
    from safetensors.torch import load_file

    state = load_file(str(path))
    for name, before in checked.items():
        component, module = name.split(".", 1)
        stem = f"lora_{'unet' if component == 'unet' else 'te'}_" + module.replace(".", "_")
        up, down = state[f"{stem}.lora_up.weight"], state[f"{stem}.lora_down.weight"]
        delta = (up.flatten(1) @ down.flatten(1)).reshape(before.shape) * 0.5  # alpha / rank
        expected = before.float() + 0.8 * delta
        got = get_submodule(full_size, name).weight.float()
        torch.testing.assert_close(got, expected.half().float(), rtol=1e-3, atol=1e-5)
