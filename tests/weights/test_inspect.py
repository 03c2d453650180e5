"""Metadata: kohya ss_* fields, trigger words, SHA-256 / AutoV2, and the inspect summary."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from graph.records import BaseFamily
from tests.weights.conftest import randn
from tools.weights.adapter import Adapter, AdapterModule
from tools.weights.errors import PickleRefusedError, UnsupportedFormatError
from tools.weights.files import autov2, sha256_file
from tools.weights.inspect import inspect_expert, trigger_words
from tools.weights.write import save_adapter


def test_sha256_and_autov2(tmp_path):
    path = tmp_path / "x.bin.safetensors"
    path.write_bytes(b"abc")
    digest = sha256_file(path)
    assert digest == hashlib.sha256(b"abc").hexdigest()
    assert digest.startswith("ba7816bf8f")
    assert autov2(digest) == "BA7816BF8F"
    path.write_bytes(b"abcd")  # a changed file is hashed again
    assert sha256_file(path) == hashlib.sha256(b"abcd").hexdigest()


def test_trigger_words_from_kohya_tag_frequencies():
    metadata = {
        "ss_tag_frequency": json.dumps(
            {"10_mychar": {"mychar": 40, "1girl": 25, "smile": 3}, "5_extra": {"1girl": 20}}
        ),
        "modelspec.trigger_phrase": "mychar style, ",
    }
    assert trigger_words(metadata) == ["mychar style", "1girl", "mychar", "smile"]
    assert trigger_words({"ss_tag_frequency": "not json"}) == []
    assert trigger_words({}) == []


def test_inspect_kohya_lora_with_ss_metadata(tmp_path):
    name = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"  # [640, 768]
    module = AdapterModule("lora", {"up": randn(640, 8), "down": randn(8, 768)}, alpha=4.0)
    metadata = {
        "ss_base_model_version": "sd_v1",
        "ss_network_module": "networks.lora",
        "ss_network_dim": "8",
        "ss_network_alpha": "4.0",
        "ss_tag_frequency": json.dumps({"img": {"pixel art": 9, "sprite": 2}}),
    }
    path = save_adapter(
        Adapter("kohya-lora", BaseFamily.SD15, {name: module}, metadata), tmp_path / "p.safetensors"
    )
    info = inspect_expert(path)
    assert info.kind == "peft" and info.format == "kohya-lora"
    assert info.family == BaseFamily.SD15 and info.components == ["unet"]
    assert info.modules == 1 and info.ranks == {8: 1} and info.parameters == 640 * 8 + 8 * 768
    assert info.trigger_words == ["pixel art", "sprite"]
    assert info.kohya["ss_network_module"] == "networks.lora"
    assert info.fits_full_size is True and info.unmatched == []
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.autov2 == info.sha256[:10].upper() and info.demo is None


def test_inspect_tiny_experts(tiny_files):
    lora = inspect_expert(tiny_files["lora_kohya"])
    assert lora.format == "kohya-lora" and lora.family == BaseFamily.SD15
    assert lora.fits_full_size is False  # tiny widths
    assert "tiny random weights" in lora.demo
    single = inspect_expert(tiny_files["ckpt_ldm"])
    assert (single.kind, single.format, single.family) == (
        "ckpt",
        "ldm-checkpoint",
        BaseFamily.SD15,
    )
    assert single.components == ["text_encoder", "unet", "vae"] and single.modules == 1130
    folder = inspect_expert(tiny_files["ckpt_diffusers"])
    assert folder.format == "diffusers-checkpoint" and folder.parameters == single.parameters


def test_pickled_checkpoint_is_named_as_such(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save(
        {"state_dict": {"model.diffusion_model.out.2.weight": torch.zeros(4, 320, 3, 3)}}, path
    )
    with pytest.raises(PickleRefusedError):
        inspect_expert(path)
    with pytest.raises(UnsupportedFormatError, match="pickled checkpoint"):
        inspect_expert(path, allow_pickle=True)
