"""OpenCLIP checkpoints (HPS v2.1) as ``transformers.CLIPModel``: key map and config.

OpenCLIP names ``visual.transformer.resblocks.{i}.attn.in_proj_weight`` (fused q/k/v),
``visual.proj`` (``x @ P``), ``text_projection`` …; the config is read off the tensor
shapes, except the attention heads, which no tensor shape fixes: they come from an
``open_clip_config.json`` next to the weights (OpenCLIP's hub layout), else from OpenCLIP's
published config of the architecture the shapes identify (ViT-H-14, the HPS v2.1 tower, has
80-wide vision heads: 16, not 20), else OpenCLIP's default (64-wide). Its non-OpenAI models
use exact GELU.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

_TOP = {
    "logit_scale": "logit_scale",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
}
_TRANSPOSED = {
    "visual.proj": "visual_projection.weight",
    "text_projection": "text_projection.weight",
}
_LAYER = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
    "attn.out_proj": "self_attn.out_proj",
}
_BLOCK = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.(.+?)[._](weight|bias)$")


def open_clip_to_hf(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``CLIPModel`` state dict of an OpenCLIP one (unknown keys raise ``KeyError``)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key in _TOP:
            out[_TOP[key]] = value
        elif key in _TRANSPOSED:
            out[_TRANSPOSED[key]] = value.T.contiguous()
        elif key == "attn_mask":
            continue
        else:
            match = _BLOCK.match(key)
            if match is None:
                raise KeyError(key)
            visual, layer, module, kind = match.groups()
            prefix = f"{'vision' if visual else 'text'}_model.encoder.layers.{layer}."
            if module == "attn.in_proj":
                for name, part in zip("qkv", value.chunk(3, dim=0), strict=True):
                    out[f"{prefix}self_attn.{name}_proj.{kind}"] = part
            elif module in _LAYER:
                out[f"{prefix}{_LAYER[module]}.{kind}"] = value
            else:
                raise KeyError(key)
    return out


def _layers(state: Mapping[str, torch.Tensor], visual: bool) -> int:
    pattern = re.compile(rf"^{'visual[.]' if visual else ''}transformer[.]resblocks[.](\d+)[.]")
    found = {int(m.group(1)) for k in state if (m := pattern.match(k.removeprefix("module.")))}
    return max(found) + 1


DEFAULT_HEAD_WIDTH = 64  # OpenCLIP's CLIPVisionCfg.head_width


@dataclass(frozen=True)
class Heads:
    """Attention heads of the two towers (their widths are not in any tensor shape)."""

    vision_head_width: int
    text_heads: int | None = None  # None: text width / 64
    source: str = "OpenCLIP default"


# OpenCLIP's model_configs/*.json: (vision width, vision layers, patch) -> (head_width, text heads)
PUBLISHED: dict[tuple[int, int, int], tuple[str, int, int]] = {
    (768, 12, 32): ("ViT-B-32", 64, 8),
    (768, 12, 16): ("ViT-B-16", 64, 8),
    (1024, 24, 14): ("ViT-L-14", 64, 12),
    (1280, 32, 14): ("ViT-H-14", 80, 16),
    (1408, 40, 14): ("ViT-g-14", 88, 16),
    (1664, 48, 14): ("ViT-bigG-14", 104, 20),
}
CONFIG_FILE = "open_clip_config.json"


def heads_from_config(config: Mapping) -> Heads:
    """Heads of an OpenCLIP model config (``{"model_cfg": …}`` as on the hub, or the model
    config itself)."""
    config = config.get("model_cfg", config)
    vision, text = config.get("vision_cfg", {}), config.get("text_cfg", {})
    return Heads(int(vision.get("head_width", DEFAULT_HEAD_WIDTH)), text.get("heads"), CONFIG_FILE)


def find_heads(state: Mapping[str, torch.Tensor], folder: Path | None = None) -> Heads:
    """The heads of an OpenCLIP checkpoint: ``folder/open_clip_config.json``, else the
    published config its shapes match, else OpenCLIP's defaults."""
    if folder is not None and (folder / CONFIG_FILE).is_file():
        return heads_from_config(json.loads((folder / CONFIG_FILE).read_text()))
    state = {k.removeprefix("module."): v for k, v in state.items()}
    conv = state["visual.conv1.weight"]
    key = (conv.shape[0], _layers(state, visual=True), conv.shape[-1])
    if key in PUBLISHED:
        name, head_width, text_heads = PUBLISHED[key]
        return Heads(head_width, text_heads, f"OpenCLIP {name} config")
    return Heads(DEFAULT_HEAD_WIDTH)


def open_clip_config(state: Mapping[str, torch.Tensor], tokenizer, heads: Heads | None = None):
    """A ``CLIPConfig`` matching the OpenCLIP tensors (e.g. ViT-H-14 for HPS v2.1).

    ``heads`` defaults to :func:`find_heads` of the tensors. The text tower pools at the
    tokenizer's end-of-text token.
    """
    from transformers import CLIPConfig

    heads = heads or find_heads(state)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    conv = state["visual.conv1.weight"]
    vision_width, patch = conv.shape[0], conv.shape[-1]
    grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    text_width = state["token_embedding.weight"].shape[1]
    vision_mlp = state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    text_mlp = state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    return CLIPConfig(
        text_config={
            "vocab_size": state["token_embedding.weight"].shape[0],
            "hidden_size": text_width,
            "intermediate_size": text_mlp,
            "num_hidden_layers": _layers(state, visual=False),
            "num_attention_heads": heads.text_heads or text_width // DEFAULT_HEAD_WIDTH,
            "max_position_embeddings": state["positional_embedding"].shape[0],
            "hidden_act": "gelu",
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": vision_width,
            "intermediate_size": vision_mlp,
            "num_hidden_layers": _layers(state, visual=True),
            "num_attention_heads": _heads(vision_width, heads.vision_head_width),
            "image_size": grid * patch,
            "patch_size": patch,
            "hidden_act": "gelu",
        },
        projection_dim=state["text_projection"].shape[1],
    )


def _heads(width: int, head_width: int) -> int:
    if width % head_width:
        raise ValueError(
            f"OpenCLIP vision width {width} is not a multiple of the head width {head_width}: "
            f"put the model's OpenCLIP config next to the weights as {CONFIG_FILE}"
        )
    return width // head_width


def load_open_clip(state: Mapping[str, torch.Tensor], tokenizer, heads: Heads | None = None):
    """A ``CLIPModel`` holding an OpenCLIP checkpoint's weights (strict: every key used)."""
    from transformers import CLIPModel

    model = CLIPModel(open_clip_config(state, tokenizer, heads))
    missing, unexpected = model.load_state_dict(open_clip_to_hf(state), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise KeyError(
            f"OpenCLIP conversion left missing {missing[:5]} unexpected {unexpected[:5]}"
        )
    return model.eval()
