"""Local A1111 / ComfyUI model folders: hashes, sidecars, Civitai look-up, kohya metadata."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import save_file

from graph.records import BaseFamily, ExpertKind
from tests.platforms.conftest import REAL_PAGE
from tools.platforms.local import LocalScanner, find_model_files

KOHYA_KEYS = (
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight",
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight",
)


def _lora(path, metadata=None, seed=0):
    rng = np.random.default_rng(seed)
    tensors = {key: rng.standard_normal((4, 8)).astype(np.float32) for key in KOHYA_KEYS}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def a1111(tmp_path):
    root = tmp_path / "stable-diffusion-webui"
    loras = root / "models" / "Lora"
    _lora(
        loras / "styles" / "my_style.safetensors",
        {
            "ss_output_name": "my_watercolor",
            "ss_base_model_version": "sd_v1",
            "ss_tag_frequency": json.dumps(
                {"10_wtr": {"wtr": 12, "paper texture": 5, "soft": 3, "rare": 1}}
            ),
        },
    )
    sidecar = _lora(loras / "with_sidecar.safetensors", seed=1)
    sidecar.with_suffix(".json").write_text(
        json.dumps(
            {
                "description": "Ink lines on paper.",
                "activation text": "inkline, crosshatch",
                "preferred weight": 0.7,
                "sd version": "SD1",
            }
        )
    )
    info = _lora(loras / "from_civitai.safetensors", seed=2)
    version = copy.deepcopy(json.loads(REAL_PAGE.read_text())["items"][1]["modelVersions"][0])
    version["model"] = {"name": "DreamShaper", "type": "Checkpoint", "nsfw": False}
    info.with_suffix(".civitai.info").write_text(json.dumps(version))
    (loras / "old.ckpt").write_bytes(b"not unpickled")
    (loras / "notes.txt").write_text("ignored")
    checkpoints = root / "models" / "Stable-diffusion"
    checkpoints.mkdir(parents=True)
    save_file(
        {"model.diffusion_model.input_blocks.0.0.weight": np.zeros((4, 4), np.float32)},
        str(checkpoints / "base.safetensors"),
    )
    return root


def test_files_are_found_in_a1111_and_comfyui_layouts(a1111, tmp_path):
    found = list(find_model_files([a1111]))
    files = sorted((p.name, k) for p, k in (f for f in found if isinstance(f, tuple)))
    assert files == [
        ("base.safetensors", ExpertKind.CKPT),
        ("from_civitai.safetensors", ExpertKind.PEFT),
        ("my_style.safetensors", ExpertKind.PEFT),
        ("with_sidecar.safetensors", ExpertKind.PEFT),
    ]
    skipped = [f for f in found if not isinstance(f, tuple)]
    assert [s.reason for s in skipped] == ["pickle file (pass --allow-pickle)"]
    comfy = tmp_path / "ComfyUI" / "models" / "loras"
    _lora(comfy / "x.safetensors")
    assert [p.name for p, _ in find_model_files([tmp_path / "ComfyUI"])] == ["x.safetensors"]
    assert [p.name for p, _ in find_model_files([comfy])] == ["x.safetensors"]
    (empty := tmp_path / "empty").mkdir()
    assert "no model folder" in next(iter(find_model_files([empty]))).reason


def test_each_file_is_described_from_the_best_source(a1111):
    models, skipped = LocalScanner().scan([a1111])
    by_file = {m.latest.files[0].name: m for m in models}
    assert len(models) == 4 and len(skipped) == 1

    kohya = by_file["my_style.safetensors"]
    path = a1111 / "models" / "Lora" / "styles" / "my_style.safetensors"
    assert kohya.id == _sha(path)[:12] and kohya.platform == "local"
    assert kohya.name == "my_watercolor" and kohya.tags == ["styles"]
    assert kohya.latest.trained_words == ["wtr", "paper texture", "soft"]
    assert kohya.latest.base is BaseFamily.SD15
    file = kohya.latest.files[0]
    assert (file.sha256, file.autov2, file.local_path) == (_sha(path), _sha(path)[:10], str(path))

    a1111_json = by_file["with_sidecar.safetensors"]
    assert a1111_json.latest.trained_words == ["inkline", "crosshatch"]
    assert a1111_json.latest.recommended_weight == 0.7
    assert a1111_json.description == "Ink lines on paper."

    civitai = by_file["from_civitai.safetensors"]
    assert civitai.name == "DreamShaper" and civitai.kind is ExpertKind.CKPT  # as Civitai says
    assert civitai.license["civitai_version_id"] == "128713"
    assert civitai.homepage_url == "https://civitai.com/models/4384"
    assert civitai.id == civitai.latest.id == civitai.latest.files[0].sha256[:12]

    checkpoint = by_file["base.safetensors"]
    assert (checkpoint.kind, checkpoint.latest.base) == (ExpertKind.CKPT, BaseFamily.SD15)


def test_unknown_files_are_looked_up_by_hash_on_civitai(civitai, demo, tmp_path):
    model = demo.catalogue.by_slug("pixel-art")
    folder = tmp_path / "models" / "Lora"
    folder.mkdir(parents=True)
    shutil.copy(demo.weights.info(model, model.latest).path, folder / "renamed.safetensors")
    (described,), _ = LocalScanner(civitai).scan([tmp_path])
    assert described.name == "Pixel Art Sprites" and described.platform == "local"
    assert described.latest.trained_words == ["pixelart"]
    assert described.license["civitai_model_id"] == str(model.id)
    assert any("/by-hash/" in r.path for r in demo.requests)


def test_a_broken_file_is_skipped_with_its_reason(tmp_path):
    folder = tmp_path / "models" / "Lora"
    folder.mkdir(parents=True)
    (folder / "broken.safetensors").write_bytes(b"\x01\x02")
    models, skipped = LocalScanner().scan([tmp_path])
    assert models == [] and "broken.safetensors" in skipped[0].item
    assert "safetensors" in skipped[0].reason


def test_sidecars_with_a_bom_are_read_and_too_deep_ones_skipped(tmp_path):
    folder = tmp_path / "models" / "Lora"
    bom = _lora(folder / "bom.safetensors", seed=3)
    bom.with_suffix(".json").write_text(
        json.dumps({"activation text": "inkline", "sd version": "SD1"}), encoding="utf-8-sig"
    )
    deep = _lora(folder / "deep.safetensors", seed=4)
    deep.with_suffix(".json").write_text("[" * 100_000 + "]" * 100_000)
    models, _ = LocalScanner().scan([tmp_path])
    words = {m.latest.files[0].name: m.latest.trained_words for m in models}
    assert words["bom.safetensors"] == ["inkline"] and "deep.safetensors" in words
