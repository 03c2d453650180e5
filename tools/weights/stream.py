"""Streaming merges into a single-file ``.safetensors`` (LDM layout, loads in A1111 / ComfyUI).

Checkpoints are combined key by key from memory-mapped files, holding only the tensors of
the key being merged; LoRA deltas are added to the keys of their modules. The output is
laid out tensor by tensor (:class:`~tools.weights.files.StreamingWriter`) and replaces
its path only once complete.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from tools.weights.adapter import Adapter, AdapterModule
from tools.weights.checkpoints import Checkpoint
from tools.weights.combine import combined_delta
from tools.weights.errors import IncompatibleExpertsError, MergeConfigError, UnmatchedKeysError
from tools.weights.files import StreamingWriter
from tools.weights.finite import check_adapter, checked, checked_result
from tools.weights.keymap import IGNORED_LDM, Link, link_for
from tools.weights.methods import get_method, method_params
from tools.weights.modelspec import merged_metadata
from tools.weights.plan import MergePlan
from tools.weights.read import read_adapter

logger = logging.getLogger(__name__)

DEMO_KEY = "diffgraph_demo"
EMA = "model_ema."

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class MergeReport:
    """What a streamed merge wrote."""

    output: Path
    family: str
    tensors: int
    lora_modules: dict[str, int]
    recipe_hash: str
    dtype: str | None


def merge_to_file(
    plan: MergePlan,
    output: Path,
    *,
    allow_pickle: bool = False,
    dtype: str | None = None,
    metadata: dict[str, str] | None = None,
    title: str | None = None,
) -> MergeReport:
    """Merge ``plan`` into one LDM-layout ``.safetensors`` file at ``output``.

    The key set is the first checkpoint's (or the base's); every other checkpoint must hold
    the same keys and shapes. Scheduler buffers and markers (``alphas_cumprod``, ``v_pred``,
    ``ztsnr`` …) are copied from that checkpoint unchanged; EMA copies (``model_ema.*``) are
    dropped (an EMA of one input is not the merged model's). LoRA-only plans need
    ``plan.base``; task-vector methods (TIES, DARE, task arithmetic) always do. ``dtype``
    converts the merged floats. The file's metadata is the SAI model spec of the merge
    (``title``, default the file name; see :mod:`tools.weights.modelspec`), the inputs'
    ``ss_*`` / ``modelspec.*`` fields and the recipe, then ``metadata`` on top.
    """
    method = get_method(plan.method)
    options = method_params(plan.method, plan.params)
    plan.check_weights()
    needs_base = method.checkpoints == "task_vectors" and plan.checkpoints
    if (needs_base or not plan.checkpoints) and plan.base is None:
        raise MergeConfigError(
            f"merge method {plan.method!r} with these experts needs a base checkpoint: "
            "set base in the plan (--base on the command line)"
        )
    if dtype is not None:
        torch_dtype(dtype)
    sources = [Checkpoint(e.path) for e in plan.checkpoints]
    base = Checkpoint(plan.base) if plan.base is not None else None
    opened = [*sources, *([base] if base else [])]
    try:
        reference = sources[0] if sources else base
        family = reference.family
        for other in opened:
            if other.family != family:
                raise IncompatibleExpertsError(
                    f"{other.path} is a {other.family.value} checkpoint, {reference.path} is "
                    f"{family.value}: checkpoints of different families cannot be merged"
                )
        ldm_keys = reference.ldm_keys()
        keys = [k for k in ldm_keys if not IGNORED_LDM.match(k)]
        carried = [k for k in ldm_keys if IGNORED_LDM.match(k) and not k.startswith(EMA)]
        _check_complete(opened)
        _check_keys(reference, opened, keys)
        shapes = {k: reference.ldm_shape(k) for k in keys}
        adapters = [
            read_adapter(e.path, family=family, allow_pickle=allow_pickle) for e in plan.loras
        ]
        for adapter in adapters:
            check_adapter(adapter)
        targets = _lora_targets(adapters, shapes, family)
        layout = {k: (reference.ldm_dtype(k), reference.ldm_shape(k)) for k in carried}
        layout.update({k: (_out_dtype(reference.ldm_dtype(k), dtype), shapes[k]) for k in keys})
        recipe = plan.recipe()
        recipe_hash = plan.recipe_hash()
        inputs = [(e.label, c.metadata()) for e, c in zip(plan.checkpoints, sources, strict=True)]
        if base is not None:
            inputs.append((base.path.name, base.metadata()))
        info = {
            **merged_metadata(
                family,
                title or Path(output).stem,
                {"type": "diffgraph", **recipe},
                inputs,
                [(e.label, a.metadata) for e, a in zip(plan.loras, adapters, strict=True)],
            ),
            "diffgraph_recipe": json.dumps(recipe, sort_keys=True),
            "diffgraph_recipe_hash": recipe_hash,
            **_demo_flag(opened, adapters),
            **(metadata or {}),
        }
        ckpt_weights, lora_weights = plan.checkpoint_weights(), plan.lora_weights()
        with StreamingWriter(output, layout, info) as writer:
            for key in carried:
                writer.write(key, _read(reference, key))
            for key in keys:
                tensors = [_read(s, key) for s in sources]
                original = tensors[0] if tensors else _read(base, key)
                if not original.is_floating_point():
                    writer.write(key, original)
                    continue
                if not sources:
                    value = original.to(torch.float32, copy=True)
                elif method.checkpoints == "weights":
                    value = method.for_checkpoints()(tensors, ckpt_weights, options, key)
                else:
                    anchor = _read(base, key).float()
                    diffs = [t.float() - anchor for t in tensors]
                    value = anchor + method.for_checkpoints()(diffs, ckpt_weights, options, key)
                del tensors
                if key in targets:
                    value = _add_deltas(value, targets[key], lora_weights, method, options)
                writer.write(
                    key, checked_result(value.to(layout[key][0]), f"the merged tensor {key}")
                )
    finally:
        for checkpoint in opened:
            checkpoint.close()
    counts = {e.label: len(a.modules) for e, a in zip(plan.loras, adapters, strict=True)}
    logger.debug("wrote merged %s checkpoint %s (%d tensors)", family.value, output, len(keys))
    tensors = len(keys) + len(carried)
    return MergeReport(Path(output), family.value, tensors, counts, recipe_hash, dtype)


def _demo_flag(checkpoints: list[Checkpoint], adapters: list[Adapter]) -> dict[str, str]:
    """Carry the demo marker of tiny inputs over to the merged file."""
    for found in [c.metadata() for c in checkpoints] + [a.metadata for a in adapters]:
        if DEMO_KEY in found:
            return {DEMO_KEY: found[DEMO_KEY]}
    return {}


def torch_dtype(name: str) -> torch.dtype:
    """``"float16"`` → ``torch.float16`` (float32, float16, bfloat16)."""
    if name not in _DTYPES:
        raise MergeConfigError(f"unknown dtype {name!r}: expected one of {', '.join(_DTYPES)}")
    return _DTYPES[name]


def _out_dtype(source: torch.dtype, wanted: str | None) -> torch.dtype:
    return torch_dtype(wanted) if wanted and source.is_floating_point else source


def _read(checkpoint: Checkpoint, key: str) -> torch.Tensor:
    """LDM tensor ``key`` of ``checkpoint``, refused if it holds NaN or infinity."""
    return checked(checkpoint.ldm_tensor(key), checkpoint.path, f"tensor {key}")


def _check_complete(checkpoints: list[Checkpoint]) -> None:
    """Refuse a checkpoint that lacks tensors of its family's complete key set."""
    for checkpoint in checkpoints:
        missing = checkpoint.missing_keys()
        if missing:
            raise IncompatibleExpertsError.mismatch(
                f"checkpoint {checkpoint.path}",
                f"the complete {checkpoint.family.value} key set",
                missing,
                [],
                "re-download the file: it is truncated or was saved without some tensors",
            )


def _check_keys(reference: Checkpoint, others: list[Checkpoint], keys: list[str]) -> None:
    for other in others:
        if other is reference:
            continue
        have = set(other.ldm_keys())
        missing = [k for k in keys if k not in have]
        wrong = [k for k in keys if k in have and other.ldm_shape(k) != reference.ldm_shape(k)]
        if missing or wrong:
            raise IncompatibleExpertsError.mismatch(
                str(other.path),
                str(reference.path),
                missing,
                wrong,
                "merge checkpoints of the same architecture",
            )


Target = tuple[int, AdapterModule, Link, str]


def _lora_targets(
    adapters: list[Adapter], shapes: dict[str, tuple[int, ...]], family
) -> dict[str, list[Target]]:
    """LDM key → (adapter index, module, link, weight|bias) for every adapter module."""
    targets: dict[str, list[Target]] = defaultdict(list)
    for index, adapter in enumerate(adapters):
        unmatched: list[str] = []
        for name, module in adapter.modules.items():
            component, _, path = name.partition(".")
            parts = [("weight", True), ("bias", module.bias is not None)]
            for part, wanted in parts:
                if not wanted:
                    continue
                link = link_for(family, component, f"{path}.{part}")
                if link is None or link.ldm not in shapes:
                    unmatched += list(module.keys or (name,))
                    break
                shape = link.diffusers_shape(shapes[link.ldm])
                if part == "weight" and not module.fits(shape):
                    unmatched += list(module.keys or (name,))
                    break
                targets[link.ldm].append((index, module, link, part))
        if unmatched:
            raise UnmatchedKeysError(
                adapter.source, unmatched, f"the {family.value} checkpoint being merged"
            )
    return targets


def _add_deltas(value, entries: list[Target], weights, method, options) -> torch.Tensor:
    """Add the weighted deltas of ``entries`` to LDM tensor ``value`` (slice by slice)."""
    by_link: dict[tuple[Link, str], list[tuple[int, AdapterModule, str]]] = defaultdict(list)
    for index, module, link, part in entries:
        by_link[(link, part)].append((index, module, part))
    for (link, _), items in by_link.items():
        if link.chunk is not None:
            index, count = link.chunk
            size = value.shape[0] // count
            view = value[index * size : (index + 1) * size]
        else:
            view = value
        base = link.to_diffusers(value)
        modules = [m for _, m, _ in items]
        part = items[0][2]
        combined = combined_delta(
            modules, [weights[i] for i, _, _ in items], method, options, base, part, link.diffusers
        )
        view += link.to_ldm(combined).reshape(view.shape)
    return value
