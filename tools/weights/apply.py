"""Merging experts into loaded models in place, and undoing it exactly.

``apply_merge({"unet": pipe.unet, "text_encoder": pipe.text_encoder}, plan)`` sets every
affected weight to the plan's merge — checkpoints combined by the plan's method, then the
weighted LoRA deltas added — after saving the original tensors; ``restore()`` copies them
back bit for bit, so the next prompt needs no reload. Everything is validated first:
a LoRA key matching no module, or a checkpoint missing a tensor, changes nothing; a NaN
or infinite input or result, found tensor by tensor, is refused and the tensors merged
so far are put back (unless ``backup="none"``).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from graph.records import BaseFamily
from tools.weights.adapter import Adapter
from tools.weights.checkpoints import Checkpoint
from tools.weights.combine import combined_delta
from tools.weights.errors import IncompatibleExpertsError, MergeConfigError
from tools.weights.families import named_parameters, weight_modules
from tools.weights.finite import check_adapter, checked, checked_result
from tools.weights.methods import MergeMethod, MethodParams, get_method, method_params
from tools.weights.plan import MergePlan
from tools.weights.read import read_adapter

logger = logging.getLogger(__name__)

BackupMode = Literal["memory", "disk", "none"]


class _Backup:
    """Original tensors, kept in memory or appended to a scratch file on disk."""

    def __init__(self, mode: BackupMode, folder: Path | None) -> None:
        self.mode = mode
        self._memory: dict[str, Tensor] = {}
        self._disk: dict[str, tuple[int, torch.dtype, tuple[int, ...], int]] = {}
        self._file = None
        if mode == "disk":
            fd, name = tempfile.mkstemp(prefix="diffgraph-backup-", dir=folder)
            self._file = os.fdopen(fd, "w+b")
            self._path = Path(name)

    def save(self, name: str, tensor: Tensor) -> None:
        if self.mode == "memory":
            self._memory[name] = tensor.detach().clone()
        elif self.mode == "disk":
            data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
            offset = self._file.seek(0, os.SEEK_END)
            self._file.write(data)
            self._disk[name] = (offset, tensor.dtype, tuple(tensor.shape), data.nbytes)

    def load(self, name: str) -> Tensor:
        if self.mode == "memory":
            return self._memory[name]
        offset, dtype, shape, size = self._disk[name]
        self._file.seek(offset)
        raw = np.frombuffer(self._file.read(size), dtype=np.uint8)
        return torch.from_numpy(raw.copy()).view(dtype).reshape(shape)

    def close(self) -> None:
        self._memory.clear()
        if self._file is not None:
            self._file.close()
            self._path.unlink(missing_ok=True)
            self._file = None


@dataclass
class AppliedMerge:
    """The result of :func:`apply_merge`; ``restore()`` undoes it exactly.

    Also a context manager: ``with apply_merge(...):`` restores on exit.
    """

    plan: MergePlan
    changed: list[str]
    lora_modules: dict[str, int]
    _params: dict[str, Tensor] = field(repr=False)
    _backup: _Backup = field(repr=False)
    restored: bool = False

    @property
    def restorable(self) -> bool:
        return self._backup.mode != "none"

    def restore(self) -> None:
        """Put the saved original tensors back (bit-exact); a second call does nothing."""
        if self.restored:
            return
        if not self.restorable:
            raise MergeConfigError("this merge was applied with backup='none': it cannot be undone")
        with torch.no_grad():
            for name in self.changed:
                param = self._params[name]
                param.copy_(self._backup.load(name).to(param.device))
        self._backup.close()
        self.restored = True

    def __enter__(self) -> AppliedMerge:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.restorable:
            self.restore()


def component_configs(components: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The diffusers configs of loaded components (UNet layout for LDM checkpoints)."""
    return {
        name: dict(m.config)
        for name, m in components.items()
        if hasattr(m, "config") and isinstance(m.config, Mapping)
    }


def apply_merge(
    components: Mapping[str, torch.nn.Module],
    plan: MergePlan,
    *,
    allow_pickle: bool = False,
    backup: BackupMode = "memory",
    backup_dir: Path | None = None,
    family: BaseFamily | None = None,
) -> AppliedMerge:
    """Merge ``plan`` into the loaded ``components`` in place (e.g. ``{"unet": pipe.unet}``).

    The loaded weights are the base: checkpoints replace them by the method's combination
    (task-vector methods take their differences from the loaded weights), then the LoRA
    deltas ``Σ w_j·ΔW_j`` are added. ``backup`` keeps the originals in memory, in a scratch
    file under ``backup_dir`` (low memory), or not at all (cannot be restored).
    """
    params = dict(named_parameters(components))
    modules = weight_modules({n: tuple(p.shape) for n, p in params.items()})
    method = get_method(plan.method)
    options = method_params(plan.method, plan.params)
    plan.check_weights()
    configs = component_configs(components)
    adapters = [
        read_adapter(
            e.path,
            family=family,
            targets=modules,
            allow_pickle=allow_pickle,
            unet_config=configs.get("unet"),
        )
        for e in plan.loras
    ]
    for adapter in adapters:
        check_adapter(adapter)
    checkpoints = [Checkpoint(e.path, family=family, configs=configs) for e in plan.checkpoints]
    try:
        _check_checkpoints(checkpoints, params, plan)
        changed = _changed(params, adapters, bool(checkpoints))
        store = _Backup(backup, backup_dir)
        with torch.no_grad():
            for i, name in enumerate(changed):
                param = params[name]
                store.save(name, param)
                try:
                    _merge_into(name, param, checkpoints, adapters, plan, method, options)
                except BaseException:
                    _undo(changed[: i + 1], params, store)
                    raise
    finally:
        for checkpoint in checkpoints:
            checkpoint.close()
    counts = {e.label: len(a.modules) for e, a in zip(plan.loras, adapters, strict=True)}
    logger.debug(
        "merged %d checkpoint(s) and %d LoRA(s) into %d tensors (%s)",
        len(checkpoints),
        len(adapters),
        len(changed),
        plan.method,
    )
    return AppliedMerge(plan, changed, counts, {n: params[n] for n in changed}, store)


def _undo(names: list[str], params: Mapping[str, Tensor], store: _Backup) -> None:
    """Put back the tensors saved before a merge that failed midway (if they were saved)."""
    if store.mode != "none":
        for name in names:
            params[name].copy_(store.load(name).to(params[name].device))
    store.close()


def _check_checkpoints(
    checkpoints: list[Checkpoint], params: Mapping[str, Tensor], plan: MergePlan
) -> None:
    for checkpoint, expert in zip(checkpoints, plan.checkpoints, strict=True):
        missing, wrong = [], []
        for name, param in params.items():
            shape = checkpoint.diffusers_shape(name)
            if shape is None:
                missing.append(name)
            elif tuple(shape) != tuple(param.shape):
                wrong.append(f"{name} {tuple(shape)} vs loaded {tuple(param.shape)}")
        if missing or wrong:
            raise IncompatibleExpertsError.mismatch(
                f"checkpoint {expert.path}",
                "the loaded model",
                missing,
                wrong,
                "use checkpoints of the loaded base model's family and architecture",
            )


def _changed(params: Mapping[str, Tensor], adapters: list[Adapter], all_params: bool) -> list[str]:
    if all_params:
        return [n for n, p in params.items() if p.is_floating_point()]
    names: set[str] = set()
    for adapter in adapters:
        for module_name, module in adapter.modules.items():
            names.add(f"{module_name}.weight")
            if module.bias is not None:
                names.add(f"{module_name}.bias")
    missing = sorted(n for n in names if n not in params)
    if missing:
        raise IncompatibleExpertsError(
            f"LoRA bias deltas target modules without a bias: {', '.join(missing[:8])}"
        )
    return [n for n in params if n in names]


def _merge_into(
    name: str,
    param: Tensor,
    checkpoints: list[Checkpoint],
    adapters: list[Adapter],
    plan: MergePlan,
    method: MergeMethod,
    options: MethodParams,
) -> None:
    """Set parameter ``name`` to its merged value (computed in float32 on its device)."""
    device = param.device
    weight = param.detach()
    work = weight if weight.dtype == torch.float32 else weight.float()  # may alias param
    if checkpoints:
        tensors = [
            checked(c.diffusers_tensor(name), c.path, f"tensor {name}").to(device)
            for c in checkpoints
        ]
        combine = method.for_checkpoints()
        if method.checkpoints == "weights":
            work = combine(tensors, plan.checkpoint_weights(), options, name).to(device)
        else:
            diffs = [t.float() - work for t in tensors]
            work = work + combine(diffs, plan.checkpoint_weights(), options, name).to(device)
    module_name, _, part = name.rpartition(".")
    present = [
        (module, w)
        for adapter, w in zip(adapters, plan.lora_weights(), strict=True)
        if (module := adapter.modules.get(module_name)) is not None
        and (part == "weight" or module.bias is not None)
    ]
    if present:
        modules, weights = zip(*present, strict=True)
        delta = combined_delta(modules, weights, method, options, work, part, name)
        work.add_(checked_result(delta, f"the LoRA delta of {name}"))
    if work is not weight:
        weight.copy_(work)
    checked_result(weight, f"the merged tensor {name}")  # in the parameter's dtype
