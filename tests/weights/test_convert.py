"""LDM ↔ diffusers key layouts against the real key maps and diffusers' own converters."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from graph.records import BaseFamily
from tests.weights.conftest import keymap_shapes, tiny_open_clip
from tools.weights.convert import diffusers_to_ldm, export_single_file, ldm_to_diffusers
from tools.weights.errors import UnmatchedKeysError
from tools.weights.families import detect_checkpoint_family, parameter_shapes
from tools.weights.keymap import IGNORED_LDM, family_links


@pytest.mark.parametrize(
    ("family", "keymap", "components"),
    [
        (BaseFamily.SD15, "sd1-ldm", ("diffuser", "clip_l", "vae")),
        (BaseFamily.SDXL, "sdxl-sgm", ("diffuser", "clip_l", "clip_g", "vae")),
    ],
)
def test_every_real_ldm_key_has_its_diffusers_parameter(family, keymap, components):
    real = keymap_shapes(keymap, components)
    shapes = parameter_shapes(family)
    links = family_links(family)
    assert {link.diffusers for link in links} == set(shapes)
    by_key = {}
    for link in links:
        by_key.setdefault(link.ldm, []).append(link)
    required = {k for k in real if not IGNORED_LDM.match(k)}
    assert set(by_key) == required
    for key, group in by_key.items():
        for link in group:
            assert link.diffusers_shape(real[key]) == shapes[link.diffusers], key
    assert detect_checkpoint_family(real) == family


def test_tiny_ldm_file_converts_like_diffusers(tiny_pipe, tiny_files):
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    ldm = load_file(str(tiny_files["ckpt_ldm"]))
    configs = {"unet": dict(tiny_pipe.unet.config), "vae": dict(tiny_pipe.vae.config)}
    ours = ldm_to_diffusers(ldm, BaseFamily.SD15, configs)
    theirs = {
        "unet": convert_ldm_unet_checkpoint(ldm, configs["unet"]),
        "vae": convert_ldm_vae_checkpoint(ldm, configs["vae"]),
        "text_encoder": convert_ldm_clip_checkpoint(ldm),
    }
    for component, state in theirs.items():
        state = {k: v for k, v in state.items() if not k.endswith("position_ids")}
        assert set(ours[component]) == set(state), component
        for key, value in state.items():
            assert torch.equal(ours[component][key].reshape(value.shape), value), key
    back = diffusers_to_ldm(ours, BaseFamily.SD15, configs)
    assert set(back) == set(ldm) and all(torch.equal(back[k], ldm[k]) for k in ldm)


def test_open_clip_text_encoder_converts_like_diffusers():
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint

    model = tiny_open_clip()
    ldm = diffusers_to_ldm({"text_encoder_2": model.state_dict()}, BaseFamily.SDXL)
    assert "conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_weight" in ldm
    theirs = convert_open_clip_checkpoint(model, ldm, prefix="conditioner.embedders.1.model.")
    ours = ldm_to_diffusers(ldm, BaseFamily.SDXL)["text_encoder_2"]
    assert set(ours) == set(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_unknown_ldm_keys_are_named():
    with pytest.raises(UnmatchedKeysError, match=r"model\.diffusion_model\.bogus\.weight"):
        ldm_to_diffusers({"model.diffusion_model.bogus.weight": torch.zeros(1)}, BaseFamily.SD15)


def test_diffusers_folder_exports_to_a_single_file(tiny_files, tmp_path):
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    out = export_single_file(tiny_files["ckpt_diffusers"], tmp_path / "one.safetensors")
    state = load_file(str(out))
    folder = tiny_files["ckpt_diffusers"]
    unet = load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))

    config = json.loads((folder / "unet" / "config.json").read_text())
    converted = convert_ldm_unet_checkpoint(state, config)
    assert set(converted) == set(unet)
    assert all(torch.equal(converted[k], unet[k]) for k in unet)
    assert set(state) == set(load_file(str(tiny_files["ckpt_ldm"])))


def test_flux_checkpoint_family_from_real_keys():
    assert detect_checkpoint_family(keymap_shapes("flux-flux", ("diffuser",))) == BaseFamily.FLUX1


def test_sd2_checkpoints_are_not_taken_for_sd15():
    keys = ["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"]
    assert detect_checkpoint_family(keys) is None
