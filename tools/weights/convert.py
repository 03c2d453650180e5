"""Checkpoint conversion between the LDM single-file layout and diffusers, SD 1.5 / SDXL.

Dict → dict in memory (:func:`ldm_to_diffusers`, :func:`diffusers_to_ldm`) and a streamed
export of any checkpoint to one LDM-layout ``.safetensors`` (:func:`export_single_file`).
Component layouts default to the family's full-size configs; pass ``configs`` (component →
diffusers / transformers config dict) for other sizes of the same architecture.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from graph.records import BaseFamily
from tools.weights.checkpoints import Checkpoint
from tools.weights.errors import UnmatchedKeysError, WeightsError
from tools.weights.families import FAMILY_COMPONENTS, build_component
from tools.weights.files import StreamingWriter
from tools.weights.keymap import IGNORED_LDM, LDM_PREFIXES, Link, ldm_aliases, links_for
from tools.weights.names import canonical_name


def family_parameter_names(
    family: BaseFamily, configs: Mapping[str, Mapping[str, Any]] | None = None
) -> list[str]:
    """Canonical parameter names of the family's components (meta models, no memory)."""
    if family not in LDM_PREFIXES:
        raise WeightsError(f"no LDM ↔ diffusers conversion for {family.value}: sd15 and sdxl only")
    names = []
    for component, (kind, default) in FAMILY_COMPONENTS[family].items():
        config = {**default, **dict((configs or {}).get(component, {}))}
        model = build_component(kind, config)
        names += [canonical_name(f"{component}.{n}") for n in model.state_dict()]
    return names


def _links(family: BaseFamily, configs) -> list[Link]:
    return links_for(family, family_parameter_names(family, configs), configs)


def ldm_to_diffusers(
    state: Mapping[str, Tensor],
    family: BaseFamily,
    configs: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, dict[str, Tensor]]:
    """An LDM state dict as per-component diffusers state dicts (``{"unet": {...}, ...}``).

    Components absent from ``state`` are left out; keys matching no component raise
    (EMA copies and scheduler buffers are dropped).
    """
    state = {ldm_aliases(k): v for k, v in state.items()}
    out: dict[str, dict[str, Tensor]] = defaultdict(dict)
    used = set()
    for link in _links(family, configs):
        if link.ldm in state:
            component, _, name = link.diffusers.partition(".")
            out[component][name] = link.to_diffusers(state[link.ldm])
            used.add(link.ldm)
    unknown = [k for k in state if k not in used and not IGNORED_LDM.match(k)]
    if unknown:
        raise UnmatchedKeysError("LDM state dict", unknown, f"the {family.value} diffusers layout")
    return dict(out)


def diffusers_to_ldm(
    components: Mapping[str, Mapping[str, Tensor]],
    family: BaseFamily,
    configs: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Tensor]:
    """Per-component diffusers state dicts as one LDM state dict (what a single file holds)."""
    params = {
        canonical_name(f"{component}.{name}"): tensor
        for component, state in components.items()
        for name, tensor in state.items()
    }
    grouped: dict[str, list[Link]] = defaultdict(list)
    for link in links_for(family, params, configs):
        grouped[link.ldm].append(link)
    out = {}
    for key, links in grouped.items():
        links.sort(key=lambda link: link.chunk[0] if link.chunk else 0)
        pieces = [link.to_ldm(params[link.diffusers]) for link in links]
        out[key] = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)
    return out


def export_single_file(source: Path, output: Path, dtype: torch.dtype | None = None) -> Path:
    """Stream any SD 1.5 / SDXL checkpoint (diffusers folder or single file) to one LDM file."""
    with Checkpoint(source) as checkpoint:
        keys = checkpoint.ldm_keys()
        layout = {
            k: (
                dtype
                if dtype and checkpoint.ldm_dtype(k).is_floating_point
                else checkpoint.ldm_dtype(k),
                checkpoint.ldm_shape(k),
            )
            for k in keys
        }
        with StreamingWriter(output, layout, checkpoint.metadata()) as writer:
            for key in keys:
                writer.write(key, checkpoint.ldm_tensor(key).to(layout[key][0]))
    return Path(output)
