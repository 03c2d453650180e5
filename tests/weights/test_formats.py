"""Reading and writing every LoRA-type format; key layouts of SD 1.5, SDXL and FLUX.1."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from graph.records import BaseFamily
from tests.weights.conftest import keymap_shapes, randn
from tools.weights.adapter import Adapter, AdapterModule
from tools.weights.errors import PickleRefusedError, UnmatchedKeysError, UnsupportedFormatError
from tools.weights.families import module_shapes, parameter_shapes
from tools.weights.names import SEGMENTS, kohya_to_module, module_to_kohya, underscored_to_path
from tools.weights.read import read_adapter
from tools.weights.write import save_adapter

Q = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"  # [320, 320]
CONV = "unet.down_blocks.0.resnets.0.conv1"  # [320, 320, 3, 3]
PROJ = "unet.down_blocks.0.attentions.0.proj_in"  # [320, 320, 1, 1] in SD 1.5
TE = "text_encoder.text_model.encoder.layers.0.self_attn.q_proj"  # [768, 768]


def lora(out: int, inp: int, rank: int = 2, kernel: tuple[int, ...] = (), seed: int = 0):
    tail = (1, 1) if kernel else ()
    return AdapterModule(
        "lora",
        {
            "up": randn(out, rank, *tail, seed=seed),
            "down": randn(rank, inp, *kernel, seed=seed + 1),
        },
        alpha=1.0,
    )


def roundtrip(adapter: Adapter, tmp_path, fmt: str = "kohya") -> Adapter:
    path = save_adapter(adapter, tmp_path / f"x-{fmt}.safetensors", format=fmt)
    return read_adapter(path, targets=module_shapes(BaseFamily.SD15))


def assert_same(read: Adapter, written: Adapter) -> None:
    assert sorted(read.modules) == sorted(written.modules)
    for name, module in written.modules.items():
        got = read.modules[name]
        assert got.kind == module.kind and got.alpha == module.alpha
        assert got.factors.keys() == module.factors.keys()
        for key, tensor in module.factors.items():
            assert torch.equal(got.factors[key], tensor), (name, key)
        base = torch.zeros(module.natural_shape())
        assert torch.equal(got.delta(base=base), module.delta(base=base))


def test_kohya_lora_keys_and_roundtrip(tmp_path):
    adapter = Adapter(
        "kohya-lora",
        BaseFamily.SD15,
        {Q: lora(320, 320), TE: lora(768, 768), PROJ: lora(320, 320, kernel=(1, 1))},
    )
    path = save_adapter(adapter, tmp_path / "k.safetensors")
    from safetensors import safe_open

    keys = set(safe_open(str(path), "pt").keys())
    assert (
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"
        in keys
    )
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha" in keys
    read = read_adapter(path, targets=module_shapes(BaseFamily.SD15))
    assert read.format == "kohya-lora" and read.family == BaseFamily.SD15
    assert_same(read, adapter)


@pytest.mark.parametrize(
    ("module", "fmt"),
    [
        (lora(320, 320, kernel=(3, 3)), "locon"),
        (
            AdapterModule(
                "lora",
                {
                    "up": randn(320, 2, 1, 1),
                    "mid": randn(2, 2, 3, 3, seed=1),
                    "down": randn(2, 320, 1, 1, seed=2),
                },
                alpha=2.0,
            ),
            "kohya-lora",
        ),
        (
            AdapterModule(
                "loha",
                {
                    "w1_a": randn(320, 2),
                    "w1_b": randn(2, 2880, seed=1),
                    "w2_a": randn(320, 2, seed=2),
                    "w2_b": randn(2, 2880, seed=3),
                },
                alpha=1.0,
            ),
            "loha",
        ),
        (
            AdapterModule(
                "lokr",
                {"w1": randn(4, 4), "w2_a": randn(80, 2, seed=1), "w2_b": randn(2, 720, seed=2)},
                alpha=1.0,
            ),
            "lokr",
        ),
        (
            AdapterModule("full", {"diff": randn(320, 320, 3, 3)}, bias=randn(320, seed=1)),
            "lycoris-full",
        ),
    ],
)
def test_lycoris_kinds_roundtrip_through_kohya_files(tmp_path, module, fmt):
    adapter = Adapter(fmt, BaseFamily.SD15, {CONV: module})
    read = roundtrip(adapter, tmp_path)
    assert read.format == fmt
    assert_same(read, adapter)
    assert read.modules[CONV].delta(shape=(320, 320, 3, 3)).shape == (320, 320, 3, 3)


def test_dora_roundtrip_both_formats(tmp_path):
    module = AdapterModule(
        "lora",
        {"up": randn(320, 2), "down": randn(2, 320, seed=1)},
        alpha=1.0,
        dora_scale=randn(320, 1, seed=2).abs(),
    )
    adapter = Adapter("dora", BaseFamily.SD15, {Q: module})
    for fmt in ("kohya", "diffusers"):
        read = roundtrip(adapter, tmp_path, fmt)
        assert read.format == "dora"
        base = randn(320, 320, seed=3)
        torch.testing.assert_close(
            read.modules[Q].delta(base=base), module.delta(base=base), rtol=0, atol=0
        )


def test_diffusers_format_keeps_every_modules_rank_and_scale(tmp_path):
    adapter = Adapter(
        "diffusers-lora",
        BaseFamily.SD15,
        {
            Q: lora(320, 320, rank=4),
            "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k": lora(
                320, 320, rank=8
            ),
            TE: AdapterModule(
                "lora", {"up": randn(768, 4), "down": randn(4, 768, seed=1)}, alpha=16.0
            ),
        },
    )
    path = save_adapter(adapter, tmp_path / "d", format="diffusers")
    assert path.name == "pytorch_lora_weights.safetensors"
    read = read_adapter(path.parent, targets=module_shapes(BaseFamily.SD15))
    assert read.format == "diffusers-lora"
    assert {n: m.scale for n, m in read.modules.items()} == {
        n: m.scale for n, m in adapter.modules.items()
    }
    assert_same(read, adapter)


def test_diffusers_format_refuses_lycoris_modules(tmp_path):
    module = AdapterModule("full", {"diff": randn(320, 320)})
    with pytest.raises(Exception, match="format='kohya'"):
        save_adapter(
            Adapter("lycoris-full", BaseFamily.SD15, {Q: module}), tmp_path / "x", "diffusers"
        )


def test_every_real_sd15_module_has_a_kohya_name():
    modules = module_shapes(BaseFamily.SD15)
    real = keymap_shapes("sd1-kohya", ("diffuser", "clip_l"))
    real_modules = {
        k.removesuffix(".weight"): s
        for k, s in real.items()
        if k.endswith(".weight") and len(s) >= 2
    }
    assert len(real_modules) > 300
    for key, shape in real_modules.items():
        component, path = key.split(".", 1)
        name = {"unet": "unet", "te": "text_encoder"}[component] + "." + path
        stem = module_to_kohya(name, BaseFamily.SD15)
        assert stem == f"lora_{component}_" + path.replace(".", "_")
        assert kohya_to_module(stem, BaseFamily.SD15) == name
        assert modules[name] == shape


def test_sdxl_kohya_ldm_unet_names_map_to_diffusers_modules():
    modules = module_shapes(BaseFamily.SDXL)
    real = keymap_shapes("sdxl-kohya", ("diffuser", "clip_l", "clip_g"))
    checked = 0
    for key, shape in real.items():
        if not key.endswith(".weight") or len(shape) < 2:
            continue
        component, path = key.removesuffix(".weight").split(".", 1)
        stem = f"lora_{component}_" + path.replace(".", "_")  # lora_unet_input_blocks_4_1_proj_in
        name = kohya_to_module(stem, BaseFamily.SDXL)
        assert name is not None and modules[name] == shape, stem
        checked += 1
    assert checked > 700
    assert kohya_to_module("lora_unet_input_blocks_4_1_proj_in", BaseFamily.SDXL) == (
        "unet.down_blocks.1.attentions.0.proj_in"
    )
    assert kohya_to_module("lora_te2_text_model_encoder_layers_31_mlp_fc2", BaseFamily.SDXL) == (
        "text_encoder_2.text_model.encoder.layers.31.mlp.fc2"
    )


def test_segment_list_covers_every_module_path():
    for family in BaseFamily:
        for name in parameter_shapes(family):
            path = name.split(".", 1)[1]
            assert {s for s in path.split(".") if "_" in s} <= SEGMENTS, name
            module = path.rsplit(".", 1)[0]
            assert underscored_to_path(module.replace(".", "_")) == module


def test_sdxl_file_with_both_encoders_is_detected(tmp_path):
    te2 = "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj"
    adapter = Adapter(
        "kohya-lora",
        BaseFamily.SDXL,
        {
            "unet.down_blocks.1.attentions.0.proj_in": lora(640, 640),
            te2: lora(1280, 1280),
            TE: lora(768, 768),
        },
    )
    path = save_adapter(adapter, tmp_path / "xl.safetensors")
    read = read_adapter(path, targets=module_shapes(BaseFamily.SDXL))
    assert read.family == BaseFamily.SDXL
    assert sorted(read.modules) == sorted(adapter.modules)


def test_wrong_key_set_is_rejected_naming_the_keys(tmp_path):
    state = {
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": randn(2, 320, 1, 1),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": randn(320, 2, 1, 1),
        "lora_unet_down_blocks_9_attentions_0_proj_in.lora_down.weight": randn(2, 320, 1, 1),
        "lora_unet_down_blocks_9_attentions_0_proj_in.lora_up.weight": randn(320, 2, 1, 1),
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": randn(2, 768),
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": randn(768, 2),
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj.weird_suffix": randn(2),
    }
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(UnmatchedKeysError) as info:
        read_adapter(path, targets=module_shapes(BaseFamily.SD15))
    assert info.value.keys == [
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj.weird_suffix",
        "lora_unet_down_blocks_9_attentions_0_proj_in.lora_down.weight",
        "lora_unet_down_blocks_9_attentions_0_proj_in.lora_up.weight",
    ]
    message = str(info.value)
    assert "bad.safetensors: 3 key(s) map to no module" in message
    assert "lora_unet_down_blocks_9_attentions_0_proj_in.lora_up.weight" in message
    assert "nothing was applied" in message


def test_module_outside_the_target_model_is_rejected(tmp_path):
    state = {
        "lora_unet_down_blocks_9_attentions_0_proj_in.lora_down.weight": randn(2, 320, 1, 1),
        "lora_unet_down_blocks_9_attentions_0_proj_in.lora_up.weight": randn(320, 2, 1, 1),
    }
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(UnmatchedKeysError) as info:
        read_adapter(tmp_path / "bad.safetensors", targets=module_shapes(BaseFamily.SD15))
    assert info.value.keys == sorted(state)
    assert "lora_unet_down_blocks_9_attentions_0_proj_in.lora_down.weight" in str(info.value)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".bin"])
def test_pickles_are_refused_unless_allowed(tmp_path, suffix):
    path = tmp_path / f"lora{suffix}"
    torch.save(
        {
            "lora_unet_conv_in.lora_down.weight": randn(2, 4, 3, 3),
            "lora_unet_conv_in.lora_up.weight": randn(320, 2, 1, 1),
        },
        path,
    )
    with pytest.raises(PickleRefusedError, match="--allow-pickle"):
        read_adapter(path)
    assert "unet.conv_in" in read_adapter(path, allow_pickle=True).modules


def test_allowed_pickle_still_never_runs_code(tmp_path):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"x": _Evil()}))
    with pytest.raises(UnsupportedFormatError, match="weights_only"):
        read_adapter(path, allow_pickle=True)


def test_broken_file_gets_a_clear_error(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(UnsupportedFormatError, match=r"broken\.safetensors"):
        read_adapter(path)


def test_kohya_flux_file_in_bfl_naming(tmp_path):
    real = keymap_shapes("flux-flux", ("diffuser",))
    assert real["model.diffusion_model.double_blocks.0.img_attn.qkv.weight"] == (9216, 3072)
    state = {
        "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": randn(1, 3072),
        "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": randn(9216, 1, seed=1),
        "lora_unet_double_blocks_0_img_attn_qkv.alpha": torch.tensor(0.5),
    }
    save_file(state, str(tmp_path / "flux.safetensors"))
    adapter = read_adapter(tmp_path / "flux.safetensors", targets=module_shapes(BaseFamily.FLUX1))
    assert adapter.family == BaseFamily.FLUX1
    assert sorted(adapter.modules) == [
        f"transformer.transformer_blocks.0.attn.to_{p}" for p in ("k", "q", "v")
    ]
    up, down = (
        state["lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight"],
        state["lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight"],
    )
    torch.testing.assert_close(
        adapter.modules["transformer.transformer_blocks.0.attn.to_k"].delta(),
        0.5 * up[3072:6144] @ down,
    )


def test_diffusers_flux_file(tmp_path):
    adapter = Adapter(
        "diffusers-lora",
        BaseFamily.FLUX1,
        {"transformer.single_transformer_blocks.3.proj_mlp": lora(12288, 3072, rank=1)},
    )
    path = save_adapter(adapter, tmp_path / "f.safetensors", format="diffusers")
    read = read_adapter(path, targets=module_shapes(BaseFamily.FLUX1))
    assert read.family == BaseFamily.FLUX1
    assert_same(read, adapter)
