"""Base-model families: the real component configs and their module tables.

The configs are those of the public SD 1.5, SDXL base and FLUX.1-dev releases. Models are
built on the meta device (no memory, no download) to list every module name and weight
shape; tests check the tables against the real key maps of those checkpoints. The tables
are shipped in ``shapes/<family>.json.gz`` (building the models imports diffusers and
transformers: seconds); a test checks they equal freshly built ones, and
:func:`write_shape_tables` regenerates them.
"""

from __future__ import annotations

import functools
import gzip
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from graph.records import BaseFamily
from tools.weights.names import canonical_name

CLIP_L = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
    "vocab_size": 49408,
    "max_position_embeddings": 77,
}
OPEN_CLIP_G = {
    **CLIP_L,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "projection_dim": 1280,
    "hidden_act": "gelu",
}
SD15_UNET = {
    "sample_size": 64,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
}
SDXL_UNET = {
    "sample_size": 128,
    "cross_attention_dim": 2048,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "layers_per_block": 2,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "transformer_layers_per_block": [1, 2, 10],
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
VAE = {
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "latent_channels": 4,
    "layers_per_block": 2,
    "sample_size": 512,
}
FLUX_TRANSFORMER = {"guidance_embeds": True}

# component name -> (builder kind, config) for each family
FAMILY_COMPONENTS: dict[BaseFamily, dict[str, tuple[str, dict[str, Any]]]] = {
    BaseFamily.SD15: {
        "unet": ("unet", SD15_UNET),
        "text_encoder": ("clip", CLIP_L),
        "vae": ("vae", VAE),
    },
    BaseFamily.SDXL: {
        "unet": ("unet", SDXL_UNET),
        "text_encoder": ("clip", CLIP_L),
        "text_encoder_2": ("clip_projection", OPEN_CLIP_G),
        "vae": ("vae", VAE),
    },
    BaseFamily.FLUX1: {"transformer": ("flux", FLUX_TRANSFORMER)},
}


def build_component(kind: str, config: Mapping[str, Any], device: str = "meta"):
    """A diffusers / transformers model of the given kind and config on ``device``."""
    import torch

    with torch.device(device):
        if kind == "unet":
            from diffusers import UNet2DConditionModel

            return UNet2DConditionModel(**config)
        if kind == "vae":
            from diffusers import AutoencoderKL

            return AutoencoderKL(**config)
        if kind == "flux":
            from diffusers import FluxTransformer2DModel

            return FluxTransformer2DModel(**config)
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

        cls = CLIPTextModelWithProjection if kind == "clip_projection" else CLIPTextModel
        return cls(CLIPTextConfig(**config))


SHAPE_TABLES = Path(__file__).resolve().parent / "shapes"


@functools.cache
def parameter_shapes(family: BaseFamily) -> dict[str, tuple[int, ...]]:
    """Every parameter of the family's full-size components: ``component.param`` → shape.

    Read from the shipped table (:data:`SHAPE_TABLES`), as :func:`build_parameter_shapes`
    makes it.
    """
    table = json.loads(gzip.decompress((SHAPE_TABLES / f"{family.value}.json.gz").read_bytes()))
    return {name: tuple(shape) for name, shape in table.items()}


def build_parameter_shapes(family: BaseFamily) -> dict[str, tuple[int, ...]]:
    """:func:`parameter_shapes` from the family's components built on the meta device."""
    shapes: dict[str, tuple[int, ...]] = {}
    for component, (kind, config) in FAMILY_COMPONENTS[family].items():
        model = build_component(kind, config)
        for name, tensor in model.state_dict().items():
            shapes[canonical_name(f"{component}.{name}")] = tuple(tensor.shape)
    return shapes


def write_shape_tables() -> None:
    """Regenerate the shipped shape tables (after a family config or library change)."""
    SHAPE_TABLES.mkdir(exist_ok=True)
    for family in FAMILY_COMPONENTS:
        data = json.dumps(build_parameter_shapes(family), separators=(",", ":")).encode()
        (SHAPE_TABLES / f"{family.value}.json.gz").write_bytes(gzip.compress(data, mtime=0))


def text_model_prefix(module: Any) -> str:
    """``"text_model."`` for a transformers ≥5 ``CLIPTextModel`` (which dropped that level).

    Files and older releases name its parameters ``text_model.encoder.…``; canonical names
    keep that level (:func:`~tools.weights.names.canonical_name`); module lookup drops it.
    """
    if type(module).__name__ == "CLIPTextModel" and not hasattr(module, "text_model"):
        return "text_model."
    return ""


def named_parameters(components: Mapping[str, Any]):
    """``(canonical name, parameter)`` of every parameter of loaded components."""
    for component, module in components.items():
        for name, param in module.named_parameters():
            yield canonical_name(f"{component}.{name}"), param


def get_submodule(components: Mapping[str, Any], name: str):
    """The module of loaded components with canonical name ``name`` (KeyError if none)."""
    component, _, path = name.partition(".")
    if component not in components:
        raise KeyError(name)
    module = components[component]
    prefix = text_model_prefix(module)
    if prefix and path.startswith(prefix):
        path = path[len(prefix) :]
    try:
        return module.get_submodule(path) if path else module
    except AttributeError as exc:
        raise KeyError(name) from exc


@functools.cache
def module_shapes(family: BaseFamily) -> dict[str, tuple[int, ...]]:
    """LoRA-targetable modules (Linear / Conv weights) of the family: name → weight shape."""
    return weight_modules(parameter_shapes(family))


def weight_modules(params: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Modules owning a ≥2-D ``weight`` among parameter shapes: module name → weight shape."""
    return {
        name.removesuffix(".weight"): tuple(shape)
        for name, shape in params.items()
        if name.endswith(".weight") and len(shape) >= 2
    }


def component_module_shapes(
    components: Mapping[str, Any],
) -> dict[str, tuple[int, ...]]:
    """Module table of loaded components: ``{"unet": pipe.unet, ...}`` → name → weight shape."""
    return weight_modules({name: tuple(p.shape) for name, p in named_parameters(components)})


_INPUT_FACTORS = ("lora_down.weight", "lora_A.weight", "hada_w1_b", "lora.down.weight")


def detect_lora_family(keys: Iterable[str], shapes: Mapping[str, tuple[int, ...]]) -> BaseFamily:
    """Family of a LoRA-type file from its key names (and cross-attention widths)."""
    keys = list(keys)
    joined = "\n".join(keys)
    flux_marks = ("double_blocks", "single_blocks", "single_transformer_blocks")
    if any(mark in joined for mark in flux_marks) or any(
        k.startswith(("transformer.", "lora_transformer_")) for k in keys
    ):
        return BaseFamily.FLUX1
    for key in keys:  # the cross-attention input width tells SD 1.5 (768) from SDXL (2048)
        if ("attn2_to_k" in key or "attn2.to_k" in key) and key.endswith(_INPUT_FACTORS):
            shape = shapes.get(key)
            if shape and len(shape) >= 2 and shape[-1] in (768, 2048):
                return BaseFamily.SDXL if shape[-1] == 2048 else BaseFamily.SD15
    sdxl_marks = ("lora_te1_", "lora_te2_", "text_encoder_2.", "input_blocks_", "output_blocks_")
    if any(mark in joined for mark in sdxl_marks):
        return BaseFamily.SDXL
    return BaseFamily.SD15


def detect_checkpoint_family(keys: Iterable[str]) -> BaseFamily | None:
    """Family of a full checkpoint (LDM/SGM/BFL single file or diffusers names) from its keys."""
    keys = set(keys)
    joined = "\n".join(keys)
    if "double_blocks.0." in joined or "single_transformer_blocks.0." in joined:
        return BaseFamily.FLUX1
    if "conditioner.embedders.1." in joined or "label_emb.0.0.weight" in joined:
        return BaseFamily.SDXL
    if "add_embedding.linear_1.weight" in joined:
        return BaseFamily.SDXL
    if "cond_stage_model.model." in joined:  # SD 2.x (OpenCLIP-H): not a supported family
        return None
    if "cond_stage_model." in joined or "model.diffusion_model.input_blocks." in joined:
        return BaseFamily.SD15
    if "down_blocks.0." in joined or "text_model.encoder.layers.0." in joined:
        return BaseFamily.SD15
    return None
