"""The scorers against their reference architectures and transforms (issue 17).

Published shapes are built from the references' configs on the meta device (no memory, no
download); the formulas are checked on tiny random models against forwards written here the
way the references compute them (OpenCLIP's ``nn.MultiheadAttention`` blocks, HPS v2's
``ResizeMaxSize``, CLIP's 8-bit PIL transform). With ``open_clip`` importable the shapes are
also compared with OpenCLIP's own models.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from tools.scorers.load import load_scorers
from tools.scorers.open_clip import find_heads, open_clip_config, open_clip_to_hf
from tools.scorers.preprocess import clip_preprocess, pad_square_preprocess, to_uint8
from tools.settings import ScorerSettings

# OpenCLIP's model_configs/ViT-H-14.json (the HPS v2.1 tower)
VIT_H_14 = {
    "embed_dim": 1024,
    "vision_cfg": {"image_size": 224, "layers": 32, "width": 1280, "head_width": 80,
                   "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 1024, "heads": 16,
                 "layers": 24},
}  # fmt: skip
H14_TOKENIZER = SimpleNamespace(bos_token_id=49406, eos_token_id=49407, pad_token_id=0)


def open_clip_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of OpenCLIP's ``CLIP`` (VisionTransformer + text transformer)."""
    vision, text, embed = config["vision_cfg"], config["text_cfg"], config["embed_dim"]
    vw, tw, patch = vision["width"], text["width"], vision["patch_size"]
    grid = vision["image_size"] // patch
    shapes = {
        "logit_scale": (),
        "token_embedding.weight": (text["vocab_size"], tw),
        "positional_embedding": (text["context_length"], tw),
        "ln_final.weight": (tw,),
        "ln_final.bias": (tw,),
        "text_projection": (tw, embed),
        "visual.class_embedding": (vw,),
        "visual.positional_embedding": (grid * grid + 1, vw),
        "visual.conv1.weight": (vw, 3, patch, patch),
        "visual.ln_pre.weight": (vw,),
        "visual.ln_pre.bias": (vw,),
        "visual.ln_post.weight": (vw,),
        "visual.ln_post.bias": (vw,),
        "visual.proj": (vw, embed),
    }
    for prefix, width, layers in (
        ("visual.", vw, vision["layers"]),
        ("", tw, text["layers"]),
    ):
        for i in range(layers):
            block = f"{prefix}transformer.resblocks.{i}."
            shapes.update(
                {
                    f"{block}ln_1.weight": (width,),
                    f"{block}ln_1.bias": (width,),
                    f"{block}attn.in_proj_weight": (3 * width, width),
                    f"{block}attn.in_proj_bias": (3 * width,),
                    f"{block}attn.out_proj.weight": (width, width),
                    f"{block}attn.out_proj.bias": (width,),
                    f"{block}ln_2.weight": (width,),
                    f"{block}ln_2.bias": (width,),
                    f"{block}mlp.c_fc.weight": (4 * width, width),
                    f"{block}mlp.c_fc.bias": (4 * width,),
                    f"{block}mlp.c_proj.weight": (width, 4 * width),
                    f"{block}mlp.c_proj.bias": (width,),
                }
            )
    return shapes


def test_hps_heads_and_shapes_at_the_published_vit_h14():
    from transformers import CLIPModel

    state = {k: torch.empty(s, device="meta") for k, s in open_clip_shapes(VIT_H_14).items()}
    heads = find_heads(state)
    assert (heads.vision_head_width, heads.text_heads) == (80, 16)
    config = open_clip_config(state, H14_TOKENIZER)
    assert config.vision_config.num_attention_heads == 16  # not 1280 / 64 = 20
    assert config.text_config.num_attention_heads == 16
    assert config.vision_config.image_size == 224 and config.projection_dim == 1024
    with torch.device("meta"):
        model = CLIPModel(config)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items() if "position_ids" not in k}
    got = {k: tuple(v.shape) for k, v in open_clip_to_hf(state).items()}
    assert got == want


def test_published_shapes_equal_open_clip_models():
    open_clip = pytest.importorskip("open_clip")
    for name in ("ViT-H-14", "ViT-L-14", "ViT-bigG-14"):
        with torch.device("meta"):
            model = open_clip.create_model(name, device="meta")
        config = open_clip.get_model_config(name)
        reference = {k: tuple(v.shape) for k, v in model.state_dict().items() if k != "attn_mask"}
        assert open_clip_shapes(config) == reference, name
        heads = find_heads({k: torch.empty(s, device="meta") for k, s in reference.items()})
        vision_width = config["vision_cfg"]["width"]
        assert vision_width // heads.vision_head_width == (
            model.visual.transformer.resblocks[0].attn.num_heads
        ), name
        assert heads.text_heads == model.transformer.resblocks[0].attn.num_heads, name


TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 128, "head_width": 32,
                   "patch_size": 8},
    "text_cfg": {"context_length": 0, "vocab_size": 0, "width": 64, "heads": 2, "layers": 2},
}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_open_clip(tmp_path_factory):
    """A random OpenCLIP checkpoint whose heads (4 and 2, 32 wide) no 64-wide
    assumption gets right, in a folder with its ``open_clip_config.json``."""
    from safetensors.torch import save_file

    from tools.tiny.tokenizer import MAX_LENGTH, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    config = json.loads(json.dumps(TINY))
    config["text_cfg"].update(context_length=MAX_LENGTH, vocab_size=len(tokenizer))
    generator = torch.Generator().manual_seed(7)
    state = {}
    for key, shape in open_clip_shapes(config).items():
        value = torch.randn(shape, generator=generator) * 0.3
        if key.endswith(("ln_1.weight", "ln_2.weight", "ln_pre.weight", "ln_post.weight")):
            value = value + 1
        state[key] = value
    state["logit_scale"] = torch.tensor(4.6)
    folder = tmp_path_factory.mktemp("open-clip")
    save_file(state, str(folder / "HPS_v2.1_compressed.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": config}))
    tokenizer.save_pretrained(folder)
    return folder, state, config, tokenizer


def _block(x, state, prefix, heads, mask=None):
    width = x.shape[-1]
    attn = torch.nn.MultiheadAttention(width, heads, batch_first=True)
    attn.load_state_dict(
        {
            "in_proj_weight": state[f"{prefix}attn.in_proj_weight"],
            "in_proj_bias": state[f"{prefix}attn.in_proj_bias"],
            "out_proj.weight": state[f"{prefix}attn.out_proj.weight"],
            "out_proj.bias": state[f"{prefix}attn.out_proj.bias"],
        }
    )
    h = F.layer_norm(x, (width,), state[f"{prefix}ln_1.weight"], state[f"{prefix}ln_1.bias"])
    x = x + attn(h, h, h, need_weights=False, attn_mask=mask)[0]
    h = F.layer_norm(x, (width,), state[f"{prefix}ln_2.weight"], state[f"{prefix}ln_2.bias"])
    h = F.gelu(F.linear(h, state[f"{prefix}mlp.c_fc.weight"], state[f"{prefix}mlp.c_fc.bias"]))
    return x + F.linear(h, state[f"{prefix}mlp.c_proj.weight"], state[f"{prefix}mlp.c_proj.bias"])


def open_clip_cosine(state, config, tokenizer, pixels, prompts):
    """OpenCLIP's forward (its blocks, pooling and projections) and the cosine HPS reports."""
    vision, text = config["vision_cfg"], config["text_cfg"]
    x = F.conv2d(pixels, state["visual.conv1.weight"], stride=vision["patch_size"])
    x = x.flatten(2).transpose(1, 2)
    cls = state["visual.class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + state["visual.positional_embedding"]
    width = x.shape[-1]
    x = F.layer_norm(x, (width,), state["visual.ln_pre.weight"], state["visual.ln_pre.bias"])
    for i in range(vision["layers"]):
        x = _block(x, state, f"visual.transformer.resblocks.{i}.", width // vision["head_width"])
    post = state["visual.ln_post.weight"], state["visual.ln_post.bias"]
    x = F.layer_norm(x[:, 0], (width,), *post)
    image = F.normalize(x @ state["visual.proj"], dim=-1)

    ids = tokenizer(
        prompts, padding="max_length", truncation=True, max_length=text["context_length"],
        return_tensors="pt",
    ).input_ids  # fmt: skip
    t = state["token_embedding.weight"][ids] + state["positional_embedding"]
    n = ids.shape[1]
    causal = torch.full((n, n), float("-inf")).triu(1)
    for i in range(text["layers"]):
        t = _block(t, state, f"transformer.resblocks.{i}.", text["heads"], causal)
    t = F.layer_norm(t, (t.shape[-1],), state["ln_final.weight"], state["ln_final.bias"])
    eot = (ids == tokenizer.eos_token_id).int().argmax(dim=1)
    text_embed = F.normalize(t[torch.arange(len(prompts)), eot] @ state["text_projection"], dim=-1)
    return (image * text_embed).sum(-1)


PROMPTS = ["a red cat", "a blue dog", "a photo of the sea"]


def test_hps_equals_open_clip_forward_with_the_configured_heads(tiny_open_clip, tmp_path):
    import shutil

    folder, state, config, tokenizer = tiny_open_clip
    images = torch.rand(3, 3, 40, 56, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        pixels = pad_square_preprocess(images, config["vision_cfg"]["image_size"])
        want = open_clip_cosine(state, config, tokenizer, pixels, PROMPTS)
    settings = ScorerSettings(hps_v21=folder, metrics=["hps_v21"])
    got = load_scorers(settings).score(images, PROMPTS)["hps_v21"]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)

    # the same tensors read with 64-wide heads (no config, no published match) score otherwise
    bare = tmp_path / "bare"
    shutil.copytree(folder, bare)
    (bare / "open_clip_config.json").unlink()
    wrong = load_scorers(settings.model_copy(update={"hps_v21": bare})).score(images, PROMPTS)
    assert (wrong["hps_v21"] - want).abs().max() > 1e-3


def test_image_reward_cross_attention_reads_the_vision_width():
    """BLIP ViT-L/16 + BERT-base at ImageReward's shapes: ``med_config.json`` says
    ``encoder_width`` 768, ``blip_pretrain.py`` overrides it with the vision width 1024."""
    from transformers import BlipTextModel, BlipVisionModel

    from tools.scorers.blip import text_config, vision_config

    width, layers, patch = 1024, 24, 16
    grid = 224 // patch
    timm = {
        "embeddings.class_embedding": (1, 1, width),
        "embeddings.position_embedding": (1, grid * grid + 1, width),
        "embeddings.patch_embedding.weight": (width, 3, patch, patch),
    }
    for i in range(layers):
        timm[f"encoder.layers.{i}.mlp.fc1.weight"] = (4 * width, width)
    vision_cfg = vision_config({k: torch.empty(s, device="meta") for k, s in timm.items()})
    assert (vision_cfg.num_attention_heads, vision_cfg.image_size) == (16, 224)
    med = {"vocab_size": 30524, "hidden_size": 768, "encoder_width": 768,
           "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
           "max_position_embeddings": 512}  # fmt: skip
    with torch.device("meta"):
        vision = BlipVisionModel(vision_cfg)
        text = BlipTextModel(text_config(med, vision.config.hidden_size), add_pooling_layer=False)
    shapes = {k: tuple(v.shape) for k, v in text.state_dict().items()}
    for i in range(12):
        cross = f"encoder.layer.{i}.crossattention.self."
        assert shapes[f"{cross}key.weight"] == (768, 1024)  # nn.Linear(encoder_width, 768)
        assert shapes[f"{cross}value.weight"] == (768, 1024)
    assert tuple(vision.state_dict()["encoder.layers.0.self_attn.qkv.weight"].shape) == (
        3 * width,
        width,
    )


def _pil_reference(images, size, crop_rounds):
    """CLIP's ``Resize(size, BICUBIC)`` + ``CenterCrop`` on the 8-bit PIL image + ToTensor."""
    import numpy as np
    from PIL import Image

    out = []
    for image in to_uint8(images):
        pil = Image.fromarray(image.permute(1, 2, 0).numpy())
        w, h = pil.size
        nw, nh = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
        pil = pil.resize((nw, nh), Image.BICUBIC)
        off = (lambda d: round(d / 2.0)) if crop_rounds else (lambda d: d // 2)
        left, top = off(nw - size), off(nh - size)
        pil = pil.crop((left, top, left + size, top + size))
        out.append(torch.from_numpy(np.array(pil)).permute(2, 0, 1).float() / 255)
    return torch.stack(out)


@pytest.mark.parametrize("shape", [(45, 67), (67, 45), (50, 50)])
def test_clip_preprocess_is_the_8_bit_pil_transform(shape):
    images = torch.rand(2, 3, *shape, generator=torch.Generator().manual_seed(3))
    plain = {"mean": (0, 0, 0), "std": (1, 1, 1)}
    got = clip_preprocess(images, 24, **plain)
    assert torch.equal(got, _pil_reference(images, 24, crop_rounds=True))
    got = clip_preprocess(images, 24, crop="transformers", **plain)
    assert torch.equal(got, _pil_reference(images, 24, crop_rounds=False))


def test_hps_preprocess_pads_to_a_black_square():
    """HPS v2's ResizeMaxSize: long side to ``size``, black bars top and bottom (not a crop)."""
    wide = torch.ones(1, 3, 20, 40)
    out = pad_square_preprocess(wide, 10, mean=(0, 0, 0), std=(1, 1, 1))
    assert out.shape == (1, 3, 10, 10)
    assert (out[..., :2, :] == 0).all() and (out[..., 7:, :] == 0).all()  # pad 5: 2 + 3
    torch.testing.assert_close(out[..., 2:7, :], torch.ones(1, 3, 5, 10), atol=1e-5, rtol=0)
    tall = pad_square_preprocess(torch.ones(1, 3, 40, 20), 10, mean=(0, 0, 0), std=(1, 1, 1))
    assert (tall[..., :, :2] == 0).all() and (tall[..., :, 7:] == 0).all()
