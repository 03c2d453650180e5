"""cloneofsimo ``lora`` (``lora_diffusion``) ``.safetensors`` files, SD 1.x only.

Keys are ``<component>:<index>:up|down`` (``unet``, ``text_encoder``); the metadata names,
per component, the module classes that were injected (``{"unet": '["CrossAttention",
"Attention", "GEGLU"]', "unet:rank": "4"}``). ``lora_diffusion`` numbered the ``nn.Linear``
layers inside those classes in ``model.modules()`` order, so the index maps onto the
component's linear layers in module order; each ``up @ down`` is added at scale 1.
Diffusers before 0.12 registered a transformer block's ``ff`` before ``attn2``: both orders
are tried and the one where every module's shape fits is used (none fits: an error).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

import torch

from graph.records import BaseFamily
from tools.weights.adapter import Adapter, AdapterModule
from tools.weights.errors import ShapeMismatchError, UnsupportedFormatError

FORMAT = "cloneofsimo-lora"
KEY = re.compile(r"^(unet|text_encoder):(\d+):(up|down)$")
EMBED_FLAG = "<embed>"
# injected class -> the linear layers inside it (diffusers / transformers names)
LINEARS = {
    "CrossAttention": re.compile(r"\.attn[12]\.(to_q|to_k|to_v|to_out\.0)$"),
    "Attention": re.compile(r"\.attn[12]\.(to_q|to_k|to_v|to_out\.0)$"),
    "GEGLU": re.compile(r"\.ff\.net\.0\.proj$"),
    "CLIPAttention": re.compile(r"\.self_attn\.(k_proj|v_proj|q_proj|out_proj)$"),
}
DEFAULT_TARGETS = {
    "unet": ["CrossAttention", "Attention", "GEGLU"],
    "text_encoder": ["CLIPAttention"],
}


def is_cloneofsimo(keys: list[str], metadata: Mapping[str, str] | None = None) -> bool:
    """True for the keys of a cloneofsimo ``lora`` safetensors file."""
    metadata = metadata or {}
    named = [k for k in keys if metadata.get(k) != EMBED_FLAG]
    return bool(named) and all(KEY.match(k) for k in named)


def module_order(
    modules: Mapping[str, tuple[int, ...]], component: str, classes: list[str], legacy: bool
) -> list[str]:
    """The component's linear layers inside ``classes`` in ``model.modules()`` order, from
    ``modules`` (module name → weight shape, in module order); ``legacy``: a transformer
    block's ``ff`` before its ``attn2`` (diffusers < 0.12)."""
    unknown = sorted(set(classes) - set(LINEARS))
    if unknown:
        raise UnsupportedFormatError(
            f"cloneofsimo lora: injected classes {unknown} are not supported (only "
            f"{', '.join(sorted(LINEARS))}). Fix: convert the file with the tool that made it"
        )
    patterns = [LINEARS[c] for c in classes]
    names = [
        name
        for name, shape in modules.items()
        if name.startswith(f"{component}.") and len(shape) == 2
    ]
    names = [n for n in names if any(p.search(n) for p in patterns)]
    if not legacy:
        return names
    order: list[str] = []
    held: list[str] = []  # attn2 layers of the current block wait for its ff
    for name in names:
        if ".attn2." in name:
            held.append(name)
        elif ".ff.net.0.proj" in name:
            order += [name, *held]
            held = []
        else:
            order += [*held, name]
            held = []
    return order + held


def parse_cloneofsimo(
    state: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str],
    modules: Mapping[str, tuple[int, ...]],
    source: str,
) -> Adapter:
    """The canonical adapter of a cloneofsimo ``lora`` file; ``modules``: the SD 1.5 model's
    module name → weight shape in module order (:func:`~tools.weights.families.module_shapes`
    for full size)."""
    embeds = [k for k in state if metadata.get(k) == EMBED_FLAG]
    if embeds:
        raise UnsupportedFormatError(
            f"{source}: a cloneofsimo lora with textual-inversion embeddings ({embeds[:3]}): "
            "the embeddings are not supported. Fix: save the LoRA without them"
        )
    found: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
    for key, value in state.items():
        component, index, kind = KEY.match(key).groups()
        found.setdefault(component, {}).setdefault(int(index), {})[kind] = value
    out: dict[str, AdapterModule] = {}
    for component, pairs in found.items():
        indices = sorted(pairs)
        if indices != list(range(len(indices))) or any(len(p) != 2 for p in pairs.values()):
            raise UnsupportedFormatError(
                f"{source}: cloneofsimo lora {component} indices must run 0..n-1 with an up "
                "and a down each"
            )
        classes = json.loads(metadata[component]) if component in metadata else None
        classes = classes or DEFAULT_TARGETS[component]
        placed = _place([pairs[i] for i in indices], component, classes, modules)
        if placed is None:
            count = len(module_order(modules, component, classes, legacy=False))
            raise ShapeMismatchError(
                f"{source}: the {len(indices)} {component} LoRA layers of this cloneofsimo "
                f"lora (injected into {classes}) do not fit the SD 1.5 {component}'s "
                f"{count} layers of those classes in module order. Fix: use an SD 1.x LoRA"
            )
        out.update(placed)
    return Adapter(FORMAT, BaseFamily.SD15, out, dict(metadata), source)


def _place(
    pairs: list[Mapping[str, torch.Tensor]],
    component: str,
    classes: list[str],
    modules: Mapping[str, tuple[int, ...]],
) -> dict[str, AdapterModule] | None:
    """``pairs`` (up / down, index order) on the component's layers, or None if the shapes
    fit neither module order."""
    for legacy in (False, True):
        order = module_order(modules, component, classes, legacy)
        if len(order) == len(pairs) and all(
            _fits(pair, modules[name]) for pair, name in zip(pairs, order, strict=True)
        ):
            return {
                name: AdapterModule(
                    kind="lora",
                    factors={"up": pair["up"], "down": pair["down"]},
                    alpha=None,  # lora_diffusion's scale 1
                    shape=tuple(modules[name]),
                    keys=(f"{component}:{i}:up", f"{component}:{i}:down"),
                )
                for i, (pair, name) in enumerate(zip(pairs, order, strict=True))
            }
    return None


# what lora_diffusion's ``save_lora_weight`` wrote into ``.pt`` files, most likely first
PT_TARGETS = (
    ("unet", DEFAULT_TARGETS["unet"]),
    ("unet", ["CrossAttention", "Attention"]),
    ("text_encoder", DEFAULT_TARGETS["text_encoder"]),
)


def parse_pt_list(
    tensors: list[torch.Tensor], modules: Mapping[str, tuple[int, ...]], source: str
) -> Adapter:
    """A pickled cloneofsimo / GORS ``.pt`` LoRA: a list ``[up0, down0, up1, down1, …]`` of
    one component (``lora.pt``: the UNet, ``lora.text_encoder.pt``: the text encoder), with
    no metadata; the component and injected classes are the ones every shape fits."""
    if len(tensors) % 2 or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise UnsupportedFormatError(
            f"{source} holds a list that is not a cloneofsimo / GORS LoRA (an even number of "
            "tensors, up and down alternating). Fix: convert it to .safetensors"
        )
    pairs = [{"up": tensors[i], "down": tensors[i + 1]} for i in range(0, len(tensors), 2)]
    for component, classes in PT_TARGETS:
        placed = _place(pairs, component, classes, modules)
        if placed is not None:
            return Adapter(FORMAT, BaseFamily.SD15, placed, {}, source)
    raise ShapeMismatchError(
        f"{source}: a cloneofsimo / GORS .pt LoRA list of {len(pairs)} up/down pairs that fits "
        "no SD 1.5 UNet or text encoder layer order. Fix: use an SD 1.x LoRA"
    )


def _fits(pair: Mapping[str, torch.Tensor], shape: tuple[int, ...]) -> bool:
    up, down = pair["up"], pair["down"]
    return (
        up.dim() == 2
        and down.dim() == 2
        and up.shape[1] == down.shape[0]
        and (up.shape[0], down.shape[1]) == tuple(shape)
    )
