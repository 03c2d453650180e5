"""diffusers / PEFT LoRA files (``….lora_A.weight`` / ``….lora_B.weight``) ↔ canonical adapters.

diffusers' ``save_lora_weights`` prefixes keys by component (``unet.``, ``text_encoder.``,
``transformer.``) and stores each component's ``LoraConfig`` in the safetensors metadata
(``lora_adapter_metadata``); PEFT's ``save_pretrained`` writes ``base_model.model.…`` keys
beside an ``adapter_config.json``. Scale: ``lora_alpha / r`` per module (``alpha_pattern``
/ ``rank_pattern`` exceptions; ``lora_alpha / √r`` with rsLoRA), 1 without a config.
"""

from __future__ import annotations

import collections
import json
import math
import re
from collections.abc import Container, Mapping
from typing import Any

from torch import Tensor

from graph.records import BaseFamily
from tools.weights.adapter import COMPONENTS, Adapter, AdapterModule
from tools.weights.errors import UnmatchedKeysError, WeightsError
from tools.weights.names import canonical_name

METADATA_KEY = "lora_adapter_metadata"
PEFT_PREFIX = "base_model.model."
_SUFFIXES = {
    "lora_A.weight": "down",
    "lora_B.weight": "up",
    "lora.down.weight": "down",
    "lora.up.weight": "up",
    "lora_B.bias": "bias",
    "lora_magnitude_vector": "magnitude",
    "lora_magnitude_vector.weight": "magnitude",
    "alpha": "alpha",
}
_SPLIT = re.compile(r"^(.*?)\.(" + "|".join(re.escape(s) for s in _SUFFIXES) + r")$")


def is_diffusers_lora(keys: list[str]) -> bool:
    return any(_SPLIT.match(k) for k in keys) and not any(k.startswith("lora_") for k in keys)


def component_configs(metadata: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Per-component ``LoraConfig`` kwargs from diffusers' ``lora_adapter_metadata``."""
    raw = metadata.get(METADATA_KEY)
    if not raw:
        return {}
    try:
        packed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{METADATA_KEY} metadata is not valid JSON: {exc}") from exc
    configs: dict[str, dict[str, Any]] = collections.defaultdict(dict)
    for key, value in packed.items():
        component, _, field = key.partition(".")
        configs[component][field] = value
    return dict(configs)


def _pattern_value(patterns: Mapping[str, Any], path: str) -> Any:
    """PEFT's pattern rule: a key matches a module path ending with it."""
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", path):
            return value
    return None


def _alpha(config: Mapping[str, Any] | None, path: str, rank: int) -> float | None:
    """The alpha that gives PEFT's scale for this module as ``alpha / rank``."""
    if not config:
        return None
    alpha = _pattern_value(config.get("alpha_pattern") or {}, path)
    alpha = float(config.get("lora_alpha", config.get("r", rank)) if alpha is None else alpha)
    if config.get("use_rslora"):
        return alpha * rank / math.sqrt(rank)
    return alpha


def _default_component(paths: list[str]) -> str:
    heads = {p.split(".", 1)[0] for p in paths}
    if heads & {"down_blocks", "up_blocks", "mid_block", "conv_in"}:
        return "unet"
    if heads & {"transformer_blocks", "single_transformer_blocks"}:
        return "transformer"
    if heads & {"text_model", "encoder"}:
        return "text_encoder"
    return "unet"


def parse_diffusers(
    state: Mapping[str, Tensor],
    metadata: Mapping[str, str],
    family: BaseFamily,
    source: str,
    peft_config: Mapping[str, Any] | None = None,
    component: str | None = None,
    targets: Container[str] | None = None,
) -> Adapter:
    """A diffusers/PEFT state dict as a canonical adapter.

    ``peft_config`` is a PEFT ``adapter_config.json``; ``component`` names the pipeline
    component of a bare PEFT model save (default: guessed from the module paths). Keys of
    unknown form or of modules not in ``targets`` raise, all listed.
    """
    configs = component_configs(metadata)
    groups: dict[str, dict[str, Tensor]] = collections.defaultdict(dict)
    unmatched: list[str] = []
    for key, tensor in state.items():
        match = _SPLIT.match(key)
        if match is None:
            unmatched.append(key)
            continue
        module, suffix = match.groups()
        groups[module][_SUFFIXES[suffix]] = tensor
    if any(m.startswith(PEFT_PREFIX) for m in groups):
        bare = [m.removeprefix(PEFT_PREFIX) for m in groups]
        owner = component or _default_component(bare)
        groups = {f"{owner}.{m.removeprefix(PEFT_PREFIX)}": v for m, v in groups.items()}
        if peft_config:
            configs[owner] = dict(peft_config)
    modules: dict[str, AdapterModule] = {}
    for name, parts in groups.items():
        owner, _, path = name.partition(".")
        keys = tuple(f"{name}.{s}" for s in parts)
        outside = targets is not None and canonical_name(name) not in targets
        if owner not in COMPONENTS or not {"up", "down"} <= parts.keys() or outside:
            unmatched += keys
            continue
        rank = int(parts["down"].shape[0])
        alpha = parts.get("alpha")
        magnitude = parts.get("magnitude")
        up = parts["up"]
        modules[name] = AdapterModule(
            kind="lora",
            factors={"up": up, "down": parts["down"]},
            alpha=float(alpha.item())
            if alpha is not None
            else _alpha(configs.get(owner), path, rank),
            dora_scale=None if magnitude is None else magnitude.reshape(-1, *[1] * (up.dim() - 1)),
            bias=parts.get("bias"),
            keys=keys,
        )
    if unmatched:
        raise UnmatchedKeysError(
            source,
            unmatched,
            "the diffusers LoRA layout (<component>.<module path>.lora_A/lora_B.weight)",
            f"components are {', '.join(COMPONENTS)}; each module needs lora_A and lora_B",
        )
    dora = any(m.dora_scale is not None for m in modules.values())
    fmt = "dora" if dora else ("peft-lora" if peft_config else "diffusers-lora")
    return Adapter(fmt, family, modules, dict(metadata), source)


def diffusers_state(adapter: Adapter) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The diffusers state dict and metadata of an adapter made of LoRA modules only."""
    state: dict[str, Tensor] = {}
    by_component: dict[str, dict[str, AdapterModule]] = collections.defaultdict(dict)
    for name, module in adapter.modules.items():
        if module.kind != "lora" or "mid" in module.factors:
            what = "LoCon with a Tucker core" if module.kind == "lora" else module.kind
            raise WeightsError(
                f"module {name} is {what}: the diffusers format holds plain LoRA only; "
                "save it with format='kohya'"
            )
        state[f"{name}.lora_A.weight"] = module.factors["down"]
        state[f"{name}.lora_B.weight"] = module.factors["up"]
        if module.bias is not None:
            state[f"{name}.lora_B.bias"] = module.bias
        if module.dora_scale is not None:
            state[f"{name}.lora_magnitude_vector"] = module.dora_scale.flatten()
        owner, _, path = name.partition(".")
        by_component[owner][path] = module
    packed: dict[str, Any] = {}
    for owner, modules in by_component.items():
        for key, value in _lora_config(modules).items():
            packed[f"{owner}.{key}"] = value
    metadata = {k: v for k, v in adapter.metadata.items() if k != METADATA_KEY}
    metadata[METADATA_KEY] = json.dumps(packed, indent=2, sort_keys=True)
    metadata.setdefault("format", "pt")
    return state, metadata


def _lora_config(modules: Mapping[str, AdapterModule]) -> dict[str, Any]:
    """``LoraConfig`` kwargs that reproduce each module's rank and scale."""
    ranks = {p: m.rank for p, m in modules.items()}
    alphas = {p: (m.alpha if m.alpha is not None else float(m.rank)) for p, m in modules.items()}
    r = collections.Counter(ranks.values()).most_common(1)[0][0]
    alpha = collections.Counter(alphas.values()).most_common(1)[0][0]
    return {
        "r": r,
        "lora_alpha": alpha,
        "rank_pattern": {re.escape(p): v for p, v in ranks.items() if v != r},
        "alpha_pattern": {re.escape(p): v for p, v in alphas.items() if v != alpha},
        "target_modules": sorted(modules),
        "use_dora": any(m.dora_scale is not None for m in modules.values()),
        "lora_bias": any(m.bias is not None for m in modules.values()),
    }
