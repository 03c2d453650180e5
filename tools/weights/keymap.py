"""Key layouts: original LDM/SGM single-file names ↔ diffusers names for SD 1.5 and SDXL.

Each diffusers parameter ``component.name`` corresponds to one LDM key (sometimes a slice
of it, or a reshaped / transposed copy): a :class:`Link`. The mapping is structural (from
the UNet's block layout), so it also serves tiny models of the same architecture; tests
check it against the real key maps and against diffusers' own converters.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor

from graph.records import BaseFamily
from tools.weights.errors import UnmatchedKeysError, WeightsError
from tools.weights.families import FAMILY_COMPONENTS

Op = Literal["copy", "conv1x1", "transpose"]

# LDM key prefix of each diffusers component, per family
LDM_PREFIXES: dict[BaseFamily, dict[str, str]] = {
    BaseFamily.SD15: {
        "unet": "model.diffusion_model.",
        "vae": "first_stage_model.",
        "text_encoder": "cond_stage_model.transformer.",
    },
    BaseFamily.SDXL: {
        "unet": "model.diffusion_model.",
        "vae": "first_stage_model.",
        "text_encoder": "conditioner.embedders.0.transformer.",
        "text_encoder_2": "conditioner.embedders.1.model.",
    },
}
# LDM keys with no diffusers counterpart (EMA copies, scheduler buffers, CLIP extras)
IGNORED_LDM = re.compile(
    r"^(model_ema\.|alphas_cumprod|alphas_cumprod_prev|betas$|log_one_minus|posterior_|sqrt_|"
    r".*\.position_ids$|.*logit_scale$|lvlb_weights|edm_vpred\.|v_pred$|ztsnr$)"
)

# Family keys a complete checkpoint may lack: SDXL conditions on the penultimate layer of
# both text encoders, so some releases drop their last layer, final norm and projection.
OPTIONAL_LDM: dict[BaseFamily, re.Pattern[str]] = {
    BaseFamily.SDXL: re.compile(
        r"^conditioner\.embedders\.(0\.transformer\.text_model\.(encoder\.layers\.11\.|"
        r"final_layer_norm\.)|1\.model\.(transformer\.resblocks\.31\.|ln_final\.|text_projection))"
    ),
}

_RESNET = (
    ("in_layers.0", "norm1"),
    ("in_layers.2", "conv1"),
    ("emb_layers.1", "time_emb_proj"),
    ("out_layers.0", "norm2"),
    ("out_layers.3", "conv2"),
    ("skip_connection", "conv_shortcut"),
)
_VAE_ATTN = (
    ("norm", "group_norm"),
    ("q", "to_q"),
    ("k", "to_k"),
    ("v", "to_v"),
    ("proj_out", "to_out.0"),
)


@dataclass(frozen=True)
class Link:
    """One diffusers tensor and where it lives in the LDM file.

    ``chunk`` = (index, count): the diffusers tensor is that chunk of the LDM tensor along
    dim 0 (OpenCLIP's fused ``in_proj``). ``op``: ``conv1x1`` LDM ``[o, i, 1, 1]`` ↔ diffusers
    ``[o, i]``; ``transpose`` LDM ``x @ P`` ↔ diffusers ``Linear`` weight ``P.T``.
    """

    ldm: str
    diffusers: str
    op: Op = "copy"
    chunk: tuple[int, int] | None = None

    def to_diffusers(self, tensor: Tensor) -> Tensor:
        if self.chunk is not None:
            tensor = tensor.chunk(self.chunk[1], dim=0)[self.chunk[0]]
        if self.op == "conv1x1" and tensor.dim() == 4:
            return tensor[:, :, 0, 0]
        if self.op == "transpose":
            return tensor.T.contiguous()
        return tensor

    def diffusers_shape(self, ldm_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the diffusers tensor made from an LDM tensor of ``ldm_shape``."""
        shape = tuple(ldm_shape)
        if self.chunk is not None:
            shape = (shape[0] // self.chunk[1], *shape[1:])
        if self.op == "conv1x1" and len(shape) == 4:
            return shape[:2]
        if self.op == "transpose":
            return tuple(reversed(shape))
        return shape

    def to_ldm(self, tensor: Tensor) -> Tensor:
        """The LDM form of the diffusers ``tensor`` (one chunk of it when ``chunk`` is set)."""
        if self.op == "conv1x1" and tensor.dim() == 2:
            return tensor[:, :, None, None]
        if self.op == "transpose":
            return tensor.T.contiguous()
        return tensor


# --------------------------------------------------------------------------- UNet


def _unet_layout(config: Mapping[str, Any]) -> tuple[int, list[bool], list[bool]]:
    layers = config.get("layers_per_block", 2)
    if not isinstance(layers, int):
        if len(set(layers)) != 1:
            raise WeightsError(f"LDM layout needs one layers_per_block value, got {layers}")
        layers = layers[0]
    down = [t.startswith("CrossAttn") for t in config["down_block_types"]]
    up = [t.startswith("CrossAttn") for t in config["up_block_types"]]
    return layers, down, up


@functools.cache
def _unet_pairs(layers: int, down: tuple[bool, ...], up: tuple[bool, ...]) -> tuple:
    """(LDM prefix, diffusers prefix) pairs of every UNet module, resnet internals included."""
    pairs = [
        ("time_embed.0", "time_embedding.linear_1"),
        ("time_embed.2", "time_embedding.linear_2"),
        ("label_emb.0.0", "add_embedding.linear_1"),
        ("label_emb.0.2", "add_embedding.linear_2"),
        ("input_blocks.0.0", "conv_in"),
        ("out.0", "conv_norm_out"),
        ("out.2", "conv_out"),
        ("middle_block.1", "mid_block.attentions.0"),
    ]
    resnets = [("middle_block.0", "mid_block.resnets.0"), ("middle_block.2", "mid_block.resnets.1")]
    levels = len(down)
    for i, has_attn in enumerate(down):
        for j in range(layers):
            k = 1 + i * (layers + 1) + j
            resnets.append((f"input_blocks.{k}.0", f"down_blocks.{i}.resnets.{j}"))
            if has_attn:
                pairs.append((f"input_blocks.{k}.1", f"down_blocks.{i}.attentions.{j}"))
        if i < levels - 1:
            k = (i + 1) * (layers + 1)
            pairs.append((f"input_blocks.{k}.0.op", f"down_blocks.{i}.downsamplers.0.conv"))
    for i, has_attn in enumerate(up):
        for j in range(layers + 1):
            k = i * (layers + 1) + j
            resnets.append((f"output_blocks.{k}.0", f"up_blocks.{i}.resnets.{j}"))
            if has_attn:
                pairs.append((f"output_blocks.{k}.1", f"up_blocks.{i}.attentions.{j}"))
        if i < levels - 1:
            k = i * (layers + 1) + layers
            pairs.append(
                (
                    f"output_blocks.{k}.{2 if has_attn else 1}.conv",
                    f"up_blocks.{i}.upsamplers.0.conv",
                )
            )
    for ldm, diff in resnets:
        pairs += [(f"{ldm}.{a}", f"{diff}.{b}") for a, b in _RESNET]
    return tuple(pairs)


def _unet_maps(config: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    layers, down, up = _unet_layout(config)
    pairs = _unet_pairs(layers, tuple(down), tuple(up))
    return dict(pairs), {d: ldm for ldm, d in pairs}


def _swap(name: str, table: Mapping[str, str]) -> str | None:
    """Replace the longest dotted prefix of ``name`` found in ``table``."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        head = ".".join(parts[:cut])
        if head in table:
            return ".".join([table[head], *parts[cut:]])
    return None


def unet_ldm_to_diffusers(
    name: str, config: Mapping[str, Any] | None = None, family: BaseFamily | None = None
) -> str | None:
    """An LDM UNet module/parameter path (no ``model.diffusion_model.``) in diffusers naming."""
    return _swap(name, _unet_maps(config or _family_unet(family))[0])


def unet_diffusers_to_ldm(
    name: str, config: Mapping[str, Any] | None = None, family: BaseFamily | None = None
) -> str | None:
    return _swap(name, _unet_maps(config or _family_unet(family))[1])


def _family_unet(family: BaseFamily | None) -> Mapping[str, Any]:
    return FAMILY_COMPONENTS[family or BaseFamily.SD15]["unet"][1]


# --------------------------------------------------------------------------- VAE


@functools.cache
def _vae_pairs(levels: int, layers: int) -> tuple:
    pairs = [
        ("encoder.norm_out", "encoder.conv_norm_out"),
        ("decoder.norm_out", "decoder.conv_norm_out"),
    ]
    resnets = []
    for part in ("encoder", "decoder"):
        resnets += [
            (f"{part}.mid.block_1", f"{part}.mid_block.resnets.0"),
            (f"{part}.mid.block_2", f"{part}.mid_block.resnets.1"),
        ]
        pairs += [
            (f"{part}.mid.attn_1.{a}", f"{part}.mid_block.attentions.0.{b}") for a, b in _VAE_ATTN
        ]
    for i in range(levels):
        for j in range(layers):
            resnets.append((f"encoder.down.{i}.block.{j}", f"encoder.down_blocks.{i}.resnets.{j}"))
        if i < levels - 1:
            pairs.append(
                (
                    f"encoder.down.{i}.downsample.conv",
                    f"encoder.down_blocks.{i}.downsamplers.0.conv",
                )
            )
        up = levels - 1 - i
        for j in range(layers + 1):
            resnets.append((f"decoder.up.{up}.block.{j}", f"decoder.up_blocks.{i}.resnets.{j}"))
        if i < levels - 1:
            pairs.append(
                (f"decoder.up.{up}.upsample.conv", f"decoder.up_blocks.{i}.upsamplers.0.conv")
            )
    for ldm, diff in resnets:
        pairs += [(f"{ldm}.nin_shortcut", f"{diff}.conv_shortcut")]
        pairs += [(f"{ldm}", f"{diff}")]
    return tuple(pairs)


def _vae_config(config: Mapping[str, Any] | None) -> tuple[int, int]:
    config = config or FAMILY_COMPONENTS[BaseFamily.SD15]["vae"][1]
    return len(config["block_out_channels"]), config.get("layers_per_block", 2)


# --------------------------------------------------------------------------- OpenCLIP (SDXL)

_OPEN_CLIP_LAYER = (
    ("ln_1", "layer_norm1"),
    ("ln_2", "layer_norm2"),
    ("attn.out_proj", "self_attn.out_proj"),
    ("mlp.c_fc", "mlp.fc1"),
    ("mlp.c_proj", "mlp.fc2"),
)
_OPEN_CLIP_TOP = (
    ("token_embedding.weight", "text_model.embeddings.token_embedding.weight"),
    ("positional_embedding", "text_model.embeddings.position_embedding.weight"),
    ("ln_final.weight", "text_model.final_layer_norm.weight"),
    ("ln_final.bias", "text_model.final_layer_norm.bias"),
)
_LAYER = re.compile(r"^text_model\.encoder\.layers\.(\d+)\.(.+)$")
_QKV = re.compile(r"^self_attn\.([qkv])_proj\.(weight|bias)$")


def _open_clip_link(name: str) -> tuple[str, Op, tuple[int, int] | None] | None:
    """LDM (OpenCLIP) key for a CLIPTextModelWithProjection parameter."""
    top = dict((d, o) for o, d in _OPEN_CLIP_TOP)
    if name in top:
        return top[name], "copy", None
    if name == "text_projection.weight":
        return "text_projection", "transpose", None
    match = _LAYER.match(name)
    if not match:
        return None
    layer, rest = match.groups()
    base = f"transformer.resblocks.{layer}"
    qkv = _QKV.match(rest)
    if qkv:
        kind = "weight" if qkv.group(2) == "weight" else "bias"
        return f"{base}.attn.in_proj_{kind}", "copy", ("qkv".index(qkv.group(1)), 3)
    for ldm, diff in _OPEN_CLIP_LAYER:
        if rest.startswith(diff + "."):
            return f"{base}.{ldm}{rest[len(diff) :]}", "copy", None
    return None


# --------------------------------------------------------------------------- links


def link_for(
    family: BaseFamily, component: str, name: str, config: Mapping[str, Any] | None = None
) -> Link | None:
    """The LDM location of diffusers parameter ``name`` of ``component`` (None: no place)."""
    prefix = LDM_PREFIXES.get(family, {}).get(component)
    if prefix is None:
        return None
    full = f"{component}.{name}"
    if component == "unet":
        ldm = unet_diffusers_to_ldm(name, config, family)
        return None if ldm is None else Link(prefix + ldm, full)
    if component == "vae":
        table = {d: ldm for ldm, d in _vae_pairs(*_vae_config(config))}
        ldm = _swap(name, table) or name
        conv = ".mid_block.attentions.0.to_" in name and name.endswith(".weight")
        return Link(prefix + ldm, full, "conv1x1" if conv else "copy")
    if component == "text_encoder_2" and family == BaseFamily.SDXL:
        found = _open_clip_link(name)
        if found is None:
            return None
        ldm, op, chunk = found
        return Link(prefix + ldm, full, op, chunk)
    return Link(prefix + name, full)


def links_for(
    family: BaseFamily,
    params: Iterable[str],
    configs: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Link]:
    """Links of diffusers parameters ``component.name``; unplaceable ones raise."""
    configs = configs or {}
    links, missing = [], []
    for full in params:
        component, name = full.split(".", 1)
        link = link_for(family, component, name, configs.get(component))
        (links if link else missing).append(link or full)
    if missing:
        raise UnmatchedKeysError("diffusers parameters", missing, f"the {family.value} LDM layout")
    return links


@functools.cache
def family_links(family: BaseFamily) -> tuple[Link, ...]:
    """Links of every parameter of the family's full-size components."""
    from tools.weights.families import parameter_shapes

    if family not in LDM_PREFIXES:
        raise WeightsError(
            f"no LDM ↔ diffusers conversion for {family.value}: only sd15 and sdxl are supported"
        )
    return tuple(links_for(family, parameter_shapes(family)))


@functools.cache
def required_ldm_keys(family: BaseFamily) -> frozenset[str]:
    """LDM keys of the UNet and text encoder(s) every complete checkpoint of ``family`` holds
    (none known for FLUX.1). The VAE is not required: files ship without one, with another
    ("baked VAE") or, like the small world, with a smaller one; the base's VAE serves."""
    if family not in LDM_PREFIXES:
        return frozenset()
    optional = OPTIONAL_LDM.get(family)
    vae = LDM_PREFIXES[family]["vae"]
    return frozenset(
        link.ldm
        for link in family_links(family)
        if not IGNORED_LDM.match(link.ldm)
        and not link.ldm.startswith(vae)
        and not (optional and optional.match(link.ldm))
    )


def ldm_aliases(key: str) -> str:
    """Older SD 1.x files name the text encoder without ``text_model.``: normalise."""
    old = "cond_stage_model.transformer."
    if key.startswith(old) and not key.startswith(old + "text_model."):
        return old + "text_model." + key[len(old) :]
    return key
