"""kohya LoRA module names ↔ diffusers module paths.

kohya sd-scripts names a module ``lora_<component>_`` + its path with dots replaced by
underscores (``lora_unet_down_blocks_0_attentions_0_proj_in``,
``lora_te_text_model_encoder_layers_0_self_attn_q_proj``; ``lora_te1_``/``lora_te2_`` for
SDXL, whose UNet modules may also be named in the LDM layout,
``lora_unet_input_blocks_4_1_proj_in``).
Turning underscores back into dots is done by longest match against the path segments that
contain underscores in diffusers (and LDM) models; a test checks the list covers every
segment of the SD 1.5, SDXL and FLUX.1 models.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graph.records import BaseFamily

# Path segments that contain an underscore in diffusers / transformers / LDM module names.
SEGMENTS = frozenset(
    {
        "add_embedding", "add_k_proj", "add_q_proj", "add_v_proj", "context_embedder",
        "conv_in", "conv_norm_out", "conv_out", "conv_shortcut", "down_blocks", "ff_context",
        "final_layer_norm", "group_norm", "guidance_embedder", "k_proj", "layer_norm1",
        "layer_norm2", "linear_1", "linear_2", "mid_block", "norm1_context", "norm_added_k",
        "norm_added_q", "norm_k", "norm_out", "norm_q", "out_proj", "position_embedding",
        "post_quant_conv", "proj_in", "proj_mlp", "proj_out", "q_proj", "quant_conv",
        "self_attn", "single_transformer_blocks", "text_embedder", "text_model",
        "text_projection", "time_emb_proj", "time_embedding", "time_text_embed",
        "timestep_embedder", "to_add_out", "to_k", "to_out", "to_q", "to_v",
        "token_embedding", "transformer_blocks", "up_blocks", "v_proj", "x_embedder",
        # LDM UNet layout (SDXL kohya LoRAs)
        "input_blocks", "middle_block", "output_blocks", "in_layers", "emb_layers",
        "out_layers", "skip_connection", "time_embed", "label_emb",
    }
)  # fmt: skip
_LONGEST = max(s.count("_") + 1 for s in SEGMENTS)

# kohya prefix -> component, per family (SD 1.5 has one text encoder, SDXL two)
KOHYA_PREFIXES: tuple[tuple[str, str], ...] = (
    ("lora_unet_", "unet"),
    ("lora_te1_", "text_encoder"),
    ("lora_te2_", "text_encoder_2"),
    ("lora_te_", "text_encoder"),
    ("lora_transformer_", "transformer"),
)
LDM_UNET_MARKS = (
    "input_blocks.",
    "middle_block.",
    "output_blocks.",
    "time_embed.",
    "label_emb.",
    "out.",
)


def underscored_to_path(flat: str) -> str:
    """``down_blocks_0_attentions_0_proj_in`` → ``down_blocks.0.attentions.0.proj_in``."""
    tokens = flat.split("_")
    parts: list[str] = []
    i = 0
    while i < len(tokens):
        for length in range(min(_LONGEST, len(tokens) - i), 0, -1):
            candidate = "_".join(tokens[i : i + length])
            if length == 1 or candidate in SEGMENTS:
                parts.append(candidate)
                i += length
                break
    return ".".join(parts)


def kohya_to_module(
    stem: str, family: BaseFamily | None, unet_config: Mapping[str, Any] | None = None
) -> str | None:
    """The canonical module name of a kohya module stem (``lora_unet_…``), or None."""
    for prefix, component in KOHYA_PREFIXES:
        if stem.startswith(prefix):
            path = underscored_to_path(stem[len(prefix) :])
            if component == "unet" and path.startswith(LDM_UNET_MARKS):
                from tools.weights.keymap import unet_ldm_to_diffusers

                converted = unet_ldm_to_diffusers(path, unet_config, family)
                if converted is None:
                    return None
                path = converted
            return f"{component}.{path}"
    return None


def module_to_kohya(module: str, family: BaseFamily | None) -> str:
    """``unet.down_blocks.0…`` → ``lora_unet_down_blocks_0…`` (``lora_te1_`` for SDXL)."""
    component, path = module.split(".", 1)
    prefix = {
        "unet": "lora_unet_",
        "text_encoder": "lora_te1_" if family == BaseFamily.SDXL else "lora_te_",
        "text_encoder_2": "lora_te2_",
        "transformer": "lora_transformer_",
    }.get(component)
    if prefix is None:
        raise ValueError(f"no kohya prefix for component {component!r} of module {module!r}")
    return prefix + path.replace(".", "_")


_CLIP_TOP = ("encoder.", "embeddings.", "final_layer_norm")


def canonical_name(module_name: str) -> str:
    """Text-encoder names keep CLIP's ``text_model.`` level (transformers ≥5 drops it).

    ``text_encoder.encoder.layers.0.self_attn.q_proj`` →
    ``text_encoder.text_model.encoder.layers.0.self_attn.q_proj``.
    """
    component, _, path = module_name.partition(".")
    if component in ("text_encoder", "text_encoder_2") and path.startswith(_CLIP_TOP):
        return f"{component}.text_model.{path}"
    return module_name
