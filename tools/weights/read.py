"""Reading LoRA-type expert files of any supported format into canonical adapters.

``read_adapter`` recognises the format from the keys (kohya / A1111 / LyCORIS, diffusers,
PEFT folders, kohya FLUX.1, cloneofsimo ``lora``) and returns the canonical
:class:`~tools.weights.adapter.Adapter`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from graph.records import BaseFamily
from tools.weights import cloneofsimo, diffusers_lora, files, kohya
from tools.weights.adapter import Adapter
from tools.weights.errors import (
    IncompatibleExpertsError,
    ShapeMismatchError,
    UnmatchedKeysError,
    UnsupportedFormatError,
    WeightsError,
)
from tools.weights.families import detect_lora_family, module_shapes

logger = logging.getLogger(__name__)

DIFFUSERS_LORA_FILE = "pytorch_lora_weights.safetensors"
PEFT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def is_adapter_keys(keys: list[str]) -> bool:
    """True for the keys of a LoRA-type file (any supported format)."""
    return (
        kohya.is_kohya(keys)
        or diffusers_lora.is_diffusers_lora(keys)
        or cloneofsimo.is_cloneofsimo(keys)
    )


def adapter_file(path: Path) -> tuple[Path, dict[str, Any] | None]:
    """The weights file of an adapter path (file or folder) and its PEFT config, if any."""
    path = Path(path)
    if path.is_dir():
        for name in (*PEFT_FILES, DIFFUSERS_LORA_FILE):
            if (path / name).is_file():
                return adapter_file(path / name)
        raise UnsupportedFormatError(
            f"{path} is a folder without {DIFFUSERS_LORA_FILE} or {PEFT_FILES[0]}; expected a "
            "diffusers LoRA folder or a PEFT save_pretrained folder. Fix: point at the "
            "weights file itself"
        )
    if not path.is_file():
        raise WeightsError(f"expert file {path} does not exist")
    config_file = path.parent / "adapter_config.json"
    config = None
    if path.name in PEFT_FILES and config_file.is_file():
        try:
            config = json.loads(config_file.read_text())
        except json.JSONDecodeError as exc:
            raise WeightsError(f"{config_file} is not valid JSON: {exc}") from exc
    return path, config


def read_adapter(
    path: Path,
    *,
    family: BaseFamily | None = None,
    targets: Mapping[str, tuple[int, ...]] | None = None,
    allow_pickle: bool = False,
    component: str | None = None,
    unet_config: Mapping[str, Any] | None = None,
) -> Adapter:
    """Read a LoRA-type expert file into canonical form.

    ``family`` defaults to the one the keys indicate. ``targets`` (module name → weight
    shape, e.g. :func:`~tools.weights.families.module_shapes` or the modules of a loaded
    pipeline) makes every module checked: keys matching no target raise
    :class:`UnmatchedKeysError` naming them. ``component`` names the pipeline component of
    a bare PEFT save; ``unet_config`` the UNet layout for LDM-named (SDXL) kohya keys.
    """
    weights, peft_config = adapter_file(path)
    if allow_pickle and files.is_pickle(weights):
        listed = pickled_list(weights)
        if listed is not None:  # cloneofsimo / GORS .pt: [up0, down0, up1, down1, …]
            modules = targets if targets is not None else module_shapes(BaseFamily.SD15)
            return cloneofsimo.parse_pt_list(listed, modules, str(path))
    state = files.load_tensors(weights, allow_pickle=allow_pickle)
    metadata = files.read_metadata(weights)
    if cloneofsimo.is_cloneofsimo(list(state), metadata):
        return _read_cloneofsimo(state, metadata, family, targets, str(path))
    keys = list(state)
    source = str(path)
    try:
        if family is None:
            family = detect_lora_family(keys, {k: tuple(v.shape) for k, v in state.items()})
        if kohya.is_bfl_flux(keys):
            adapter = _read_bfl_flux(state, metadata, source, targets)
        elif kohya.is_kohya(keys):
            adapter = kohya.parse_kohya(state, metadata, family, source, unet_config, targets)
        elif diffusers_lora.is_diffusers_lora(keys):
            adapter = diffusers_lora.parse_diffusers(
                state, metadata, family, source, peft_config, component, targets
            )
        else:
            shown = ", ".join(keys[:5])
            raise UnsupportedFormatError(
                f"{path} is not a LoRA-type file: its keys ({shown}, …) match no kohya, "
                "LyCORIS, diffusers or PEFT layout. Fix: if it is a full checkpoint, use it "
                "with --ckpt"
            )
    except WeightsError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError, ZeroDivisionError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise UnsupportedFormatError(
            f"{path} has malformed LoRA tensors ({type(exc).__name__}: {reason}). Fix: "
            "re-download the file, or re-save it with the tool that trained it"
        ) from exc
    if targets is not None:
        check_targets(adapter, targets, f"the target model ({family.value})")
    return adapter


def _read_bfl_flux(state, metadata, source: str, targets) -> Adapter:
    """kohya FLUX.1 files (BFL names, fused qkv) through diffusers' own converter."""
    from diffusers.loaders.lora_conversion_utils import _convert_kohya_flux_lora_to_diffusers

    try:
        converted = _convert_kohya_flux_lora_to_diffusers(dict(state))
    except Exception as exc:  # the converter raises ValueError / KeyError on odd files
        raise UnsupportedFormatError(
            f"{source}: kohya FLUX.1 keys could not be converted ({exc}). Fix: convert the "
            "file to diffusers format with the tool that trained it"
        ) from exc
    adapter = diffusers_lora.parse_diffusers(
        converted, {}, BaseFamily.FLUX1, source, targets=targets
    )
    adapter.format = "kohya-lora"
    adapter.metadata = dict(metadata)
    return adapter


def check_targets(
    adapter: Adapter, targets: Mapping[str, tuple[int, ...]], description: str
) -> None:
    """Raise unless every module of ``adapter`` exists in ``targets`` with a fitting shape."""
    unmatched = [
        key
        for name, m in adapter.modules.items()
        if name not in targets
        for key in m.keys or (name,)
    ]
    if unmatched:
        raise UnmatchedKeysError(adapter.source or "adapter", unmatched, description)
    wrong = [
        f"{name} makes {m.natural_shape()}, the weight is {tuple(targets[name])}"
        for name, m in adapter.modules.items()
        if not m.fits(targets[name])
    ]
    if wrong:
        raise ShapeMismatchError(
            f"{adapter.source or 'adapter'}: {len(wrong)} module(s) do not fit {description}: "
            f"{'; '.join(wrong[:5])}. Fix: use an expert trained for this base model"
        )


def _read_cloneofsimo(state, metadata, family, targets, source: str) -> Adapter:
    """cloneofsimo ``lora`` files (SD 1.x), mapped onto ``targets`` or full-size SD 1.5."""
    if family not in (None, BaseFamily.SD15):
        raise IncompatibleExpertsError(
            f"{source} is a cloneofsimo lora (SD 1.x only), not a {family.value} expert"
        )
    modules = targets if targets is not None else module_shapes(BaseFamily.SD15)
    return cloneofsimo.parse_cloneofsimo(state, metadata, modules, source)


def pickled_list(path: Path) -> list | None:
    """The list a pickled file holds (through ``weights_only``), or None for anything else."""
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # files.load_tensors gives the error
        return None
    return data if isinstance(data, list) else None
