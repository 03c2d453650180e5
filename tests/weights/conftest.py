"""Fixtures of the weights toolkit tests: real key maps, tiny pipelines, random factors."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import pytest
import torch

KEYMAPS = Path(__file__).resolve().parent.parent / "fixtures" / "weights" / "keymaps"


def load_keymap(name: str) -> dict[str, dict[str, dict]]:
    """Component → key → {shape, dtype[, optional]} of a real checkpoint layout."""
    return json.loads(gzip.decompress((KEYMAPS / f"{name}.json.gz").read_bytes()))["components"]


def keymap_shapes(name: str, components: tuple[str, ...] | None = None) -> dict[str, tuple]:
    return {
        key: tuple(entry["shape"])
        for component, keys in load_keymap(name).items()
        if components is None or component in components
        for key, entry in keys.items()
    }


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def tiny_open_clip():
    """A seeded tiny ``CLIPTextModelWithProjection`` (SDXL's second text encoder)."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    torch.manual_seed(0)
    config = CLIPTextConfig(
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        projection_dim=8,
        vocab_size=50,
        max_position_embeddings=10,
    )
    return CLIPTextModelWithProjection(config)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread while these tests run: the small tensors here make thread
    hand-offs dominate (5x slower on a busy 2-core machine); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_pipe():
    """The tiny SD 1.5-architecture pipeline (random weights); copy before changing it."""
    from tools.tiny import build_tiny_sd15

    return build_tiny_sd15(seed=0)


@pytest.fixture
def pipe(tiny_pipe):
    return copy.deepcopy(tiny_pipe)


@pytest.fixture(scope="session")
def tiny_files(tiny_pipe, tmp_path_factory):
    """Tiny experts on disk: kohya + diffusers LoRAs, an LDM file and a diffusers folder."""
    from tools.tiny import make_tiny_checkpoint, make_tiny_lora

    folder = tmp_path_factory.mktemp("tiny-experts")
    files = {
        "lora_kohya": make_tiny_lora(tiny_pipe, folder / "a.safetensors", seed=1, format="kohya"),
        "lora_diffusers": make_tiny_lora(tiny_pipe, folder / "b.safetensors", seed=2),
    }
    make_tiny_checkpoint(tiny_pipe, folder / "c1.safetensors", seed=3, format="ldm")
    make_tiny_checkpoint(tiny_pipe, folder / "c2", seed=4, format="diffusers")
    files["ckpt_ldm"] = folder / "c1.safetensors"
    files["ckpt_diffusers"] = folder / "c2"
    return files


def state_of(components) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{key}": value.detach().clone()
        for name, module in components.items()
        for key, value in module.state_dict().items()
    }
