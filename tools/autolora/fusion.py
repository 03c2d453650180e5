"""Gated fusion of several LoRAs in the forward pass of a loaded diffusers pipeline.

Forward hooks on every adapted ``nn.Linear`` / ``nn.Conv2d`` replace the layer's output
by ``h0 + scale · Σ g_i ⊙ h_i`` (see :mod:`tools.autolora.gates`), where ``h_i`` are the
outputs of each LoRA and of the global LoRA. No weight is changed: removing the hooks
gives back the pipeline exactly as it was.

    with gated_fusion(generator.pipe, adapters, "fusion.safetensors"):
        images = generator.generate_merged(request)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from tools.autolora.branches import FUSABLE, Branch, global_branch, module_branch, out_width
from tools.autolora.config import FusionConfig
from tools.autolora.errors import AutoLoRACheckpointError, FusionError
from tools.autolora.gates import GateBank, LayerGate
from tools.weights.adapter import COMPONENTS, Adapter
from tools.weights.errors import UnmatchedKeysError
from tools.weights.families import get_submodule

logger = logging.getLogger(__name__)


@dataclass
class FusedLayer:
    """One adapted layer: its base module and branches (the LoRAs, then the global one);
    ``dim`` is the feature dimension of its output (1 for conv, -1 for linear)."""

    name: str
    module: nn.Module
    branches: list[Branch]
    dim: int


@dataclass
class FusionHandle:
    """Installed hooks; :meth:`remove` takes them all out (also on leaving ``with``)."""

    layers: dict[str, FusedLayer]
    missing_gates: list[str] = field(default_factory=list)
    demo: bool = False  # the gates were trained on demo material
    _hooks: list = field(default_factory=list, repr=False)

    @property
    def installed(self) -> bool:
        return bool(self._hooks)

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    def __enter__(self) -> FusionHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def pipeline_components(pipe) -> dict[str, nn.Module]:
    """The components of a diffusers pipeline that LoRAs adapt (UNet / transformer, text
    encoders), by the weights toolkit's component names."""
    found = {}
    for name in COMPONENTS:
        module = getattr(pipe, name, None)
        if isinstance(module, nn.Module):
            found[name] = module
    return found


def adapted_layers(
    components: Mapping[str, nn.Module], adapters: Sequence[Adapter]
) -> dict[str, nn.Module]:
    """Every layer that ``adapters`` adapt, by canonical name; raises when a module
    matches no Linear / Conv2d layer of ``components``."""
    modules: dict[str, nn.Module] = {}
    for adapter in adapters:
        unmatched = []
        for name in adapter.modules:
            if name in modules:
                continue
            try:
                module = get_submodule(components, name)
            except KeyError:
                unmatched.append(name)
                continue
            if not isinstance(module, FUSABLE):
                raise FusionError(
                    f"{adapter.source or 'LoRA'}: {name} is a {type(module).__name__}; gated "
                    "fusion handles Linear and Conv2d layers only"
                )
            modules[name] = module
        if unmatched:
            raise UnmatchedKeysError(
                adapter.source or "LoRA",
                unmatched,
                "the loaded pipeline",
                "use LoRAs of its family",
            )
    return modules


def fusion_layers(
    components: Mapping[str, nn.Module],
    adapters: Sequence[Adapter],
    weights: Sequence[float] | None = None,
    global_rank: int = 4,
) -> dict[str, FusedLayer]:
    """The branches of every layer that ``adapters`` adapt, checked against the model.

    ``weights`` multiply each LoRA's output (default 1). Raises before anything is
    installed when a module matches no fusable layer.
    """
    if weights is None:
        weights = [1.0] * len(adapters)
    if len(weights) != len(adapters):
        raise FusionError(f"{len(weights)} weights for {len(adapters)} LoRAs: give one per LoRA")
    layers = {}
    for name, module in adapted_layers(components, adapters).items():
        device, dtype = module.weight.device, module.weight.dtype
        branches = [
            module_branch(adapter.modules[name], module, w)
            for adapter, w in zip(adapters, weights, strict=True)
            if name in adapter.modules
        ]
        extra = global_branch(branches, global_rank)
        branches = [b.to(device, dtype) for b in [*branches, *([extra] if extra else [])]]
        dim = 1 if isinstance(module, nn.Conv2d) else -1
        layers[name] = FusedLayer(name, module, branches, dim)
    return layers


def install_fusion(layers: Mapping[str, FusedLayer], gates: GateBank) -> FusionHandle:
    """Hook every layer of ``layers``; layers without a gate in ``gates`` get an untrained
    one (the plain sum)."""
    handle = FusionHandle(dict(layers))
    chosen = {}
    for name, layer in layers.items():
        width = out_width(layer.module)
        gate = gates.gate(name)
        if gate is None:
            handle.missing_gates.append(name)
            gate = gates.default_gate(width)
        elif gate.width != width:
            raise AutoLoRACheckpointError(
                f"the fusion gates of {name} have width {gate.width}, the layer has {width}: "
                "the fusion checkpoint was trained for another architecture. Fix: train one "
                "for this base model with `diffgraph train-autolora fusion`"
            )
        chosen[name] = gate.to(layer.module.weight.device)
    for name, layer in layers.items():
        handle._hooks.append(
            layer.module.register_forward_hook(_hook(layer, chosen[name]), with_kwargs=True)
        )
    if handle.missing_gates and gates.names:
        logger.warning(
            "%d of %d fused layers have no trained gate (plain sum used there), e.g. %s",
            len(handle.missing_gates),
            len(layers),
            handle.missing_gates[0],
        )
    return handle


def _hook(layer: FusedLayer, gate: LayerGate):
    def hook(module, args, kwargs, output):
        x = args[0] if args else kwargs["input"]
        return gate(output, [branch(module, x) for branch in layer.branches], layer.dim)

    return hook


@contextlib.contextmanager
def gated_fusion(
    pipe,
    adapters: Sequence[Adapter],
    fusion_checkpoint: Path | GateBank | None = None,
    *,
    weights: Sequence[float] | None = None,
) -> Iterator[FusionHandle]:
    """Within the block, ``pipe`` fuses ``adapters`` with the trained gates.

    ``fusion_checkpoint``: a file written by ``diffgraph train-autolora fusion``, a
    loaded :class:`GateBank`, or None for untrained gates (the plain sum of the LoRAs
    plus the rank-4 global LoRA). ``weights`` scale each LoRA's output. The handle says
    whether the gates were trained on demo material (``demo``). The pipeline is exactly as
    before after the block, also when it raises.
    """
    demo = False
    if isinstance(fusion_checkpoint, GateBank):
        gates = fusion_checkpoint
    elif fusion_checkpoint is None:
        logger.warning("no fusion checkpoint: untrained gates (plain sum plus global LoRA)")
        gates = GateBank(FusionConfig())
    else:
        from tools.autolora.checkpoint import load_gates

        gates, record = load_gates(Path(fusion_checkpoint))
        demo = record.demo
    layers = fusion_layers(pipeline_components(pipe), adapters, weights, gates.config.global_rank)
    with install_fusion(layers, gates) as handle:
        handle.demo = demo
        yield handle
