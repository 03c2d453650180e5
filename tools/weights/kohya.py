"""kohya / A1111 / LyCORIS LoRA files (``lora_unet_…``, ``lora_te_…``) ↔ canonical adapters.

Covers LoRA and LoCon (``lora_down``/``lora_up``/``alpha``, conv layers, ``lora_mid``
Tucker cores), LyCORIS LoHa (``hada_*``), LoKr (``lokr_*``), full deltas (``diff``,
``diff_b``) and DoRA magnitudes (``dora_scale``). FLUX.1 files in kohya's BFL naming are
converted with diffusers' own converter first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Container, Mapping
from typing import Any

from torch import Tensor

from graph.records import BaseFamily
from tools.weights.adapter import Adapter, AdapterModule
from tools.weights.errors import UnmatchedKeysError, WeightsError
from tools.weights.names import canonical_name, kohya_to_module, module_to_kohya

# file suffix -> (module kind, factor name)
SUFFIXES: dict[str, tuple[str, str]] = {
    "lora_up.weight": ("lora", "up"),
    "lora_down.weight": ("lora", "down"),
    "lora_mid.weight": ("lora", "mid"),
    "hada_w1_a": ("loha", "w1_a"),
    "hada_w1_b": ("loha", "w1_b"),
    "hada_w2_a": ("loha", "w2_a"),
    "hada_w2_b": ("loha", "w2_b"),
    "hada_t1": ("loha", "t1"),
    "hada_t2": ("loha", "t2"),
    "lokr_w1": ("lokr", "w1"),
    "lokr_w1_a": ("lokr", "w1_a"),
    "lokr_w1_b": ("lokr", "w1_b"),
    "lokr_w2": ("lokr", "w2"),
    "lokr_w2_a": ("lokr", "w2_a"),
    "lokr_w2_b": ("lokr", "w2_b"),
    "lokr_t2": ("lokr", "t2"),
    "diff": ("full", "diff"),
}
_EXTRA = ("alpha", "dora_scale", "diff_b")
_FACTOR_SUFFIX = {(kind, factor): suffix for suffix, (kind, factor) in SUFFIXES.items()}


def is_kohya(keys: list[str]) -> bool:
    return any(k.startswith(("lora_unet_", "lora_te", "lora_transformer_")) for k in keys)


def is_bfl_flux(keys: list[str]) -> bool:
    return any(k.startswith(("lora_unet_double_blocks_", "lora_unet_single_blocks_")) for k in keys)


def parse_kohya(
    state: Mapping[str, Tensor],
    metadata: Mapping[str, str],
    family: BaseFamily,
    source: str,
    unet_config: Mapping[str, Any] | None = None,
    targets: Container[str] | None = None,
) -> Adapter:
    """A kohya-named state dict as a canonical adapter.

    Keys of unknown form, or of modules not in ``targets`` (when given), raise
    :class:`UnmatchedKeysError` listing all of them.
    """
    groups: dict[str, dict[str, Tensor]] = defaultdict(dict)
    unmatched: list[str] = []
    for key, tensor in state.items():
        stem, _, suffix = key.partition(".")
        if suffix in SUFFIXES or suffix in _EXTRA:
            groups[stem][suffix] = tensor
        else:
            unmatched.append(key)
    modules: dict[str, AdapterModule] = {}
    for stem, parts in groups.items():
        keys = [f"{stem}.{s}" for s in parts]
        name = kohya_to_module(stem, family, unet_config)
        if name is None or (targets is not None and canonical_name(name) not in targets):
            unmatched += keys
            continue
        try:
            modules[name] = _module(parts, tuple(keys))
        except ValueError as exc:
            raise WeightsError(
                f"{source}: module {stem}: {exc}. Fix: re-download the file, or re-save it "
                "with the tool that trained it"
            ) from exc
    if unmatched:
        raise UnmatchedKeysError(
            source,
            unmatched,
            f"the {family.value} kohya layout",
            "the file may bundle embeddings or target another model family; remove those "
            "keys or pick the matching base model",
        )
    return Adapter(_format_name(modules), family, modules, dict(metadata), source)


def _module(parts: dict[str, Tensor], keys: tuple[str, ...]) -> AdapterModule:
    kinds = {SUFFIXES[s][0] for s in parts if s in SUFFIXES}
    if len(kinds) != 1:
        raise ValueError(f"expected the factors of one algorithm, got {sorted(parts)}")
    kind = kinds.pop()
    factors = {SUFFIXES[s][1]: t for s, t in parts.items() if s in SUFFIXES}
    alpha = parts.get("alpha")
    return AdapterModule(
        kind=kind,  # type: ignore[arg-type]
        factors=factors,
        alpha=None if alpha is None else float(alpha.float().item()),
        dora_scale=parts.get("dora_scale"),
        bias=parts.get("diff_b"),
        keys=keys,
    )


def _format_name(modules: Mapping[str, AdapterModule]) -> str:
    kinds = {m.kind for m in modules.values()}
    if any(m.dora_scale is not None for m in modules.values()):
        return "dora"
    for kind in ("lokr", "loha"):
        if kind in kinds:
            return kind
    if "full" in kinds:
        return "lycoris-full"
    if any(
        m.factors["down"].dim() == 4 and m.factors["down"].shape[2:] != (1, 1)
        for m in modules.values()
    ):
        return "locon"
    return "kohya-lora"


def kohya_state(adapter: Adapter) -> dict[str, Tensor]:
    """The kohya state dict of an adapter (LoRA, LoCon, LoHa, LoKr, full, DoRA)."""
    if adapter.family == BaseFamily.FLUX1:
        raise WeightsError(
            "writing FLUX.1 adapters in kohya's BFL naming is not supported; "
            "save them with format='diffusers'"
        )
    import torch

    state: dict[str, Tensor] = {}
    for name, module in adapter.modules.items():
        stem = module_to_kohya(name, adapter.family)
        for factor, tensor in module.factors.items():
            state[f"{stem}.{_FACTOR_SUFFIX[(module.kind, factor)]}"] = tensor
        if module.alpha is not None:
            state[f"{stem}.alpha"] = torch.tensor(module.alpha)
        if module.dora_scale is not None:
            state[f"{stem}.dora_scale"] = module.dora_scale
        if module.bias is not None:
            state[f"{stem}.diff_b"] = module.bias
    return state
