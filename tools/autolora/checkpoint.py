"""AutoLoRA checkpoints: one ``.safetensors`` file each (no pickle), written atomically.

Metadata (JSON strings): ``format`` (``diffgraph-autolora-encoder`` or
``diffgraph-autolora-fusion``), ``version``, ``config`` (the architecture config) and
``training`` (a :class:`~tools.autolora.config.TrainingRecord`: data, steps, losses,
demo flag). Tensors: the encoder's state dict, or the gates as ``<layer>.<param>``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from pydantic import BaseModel, ValidationError

from tools.autolora.config import EncoderConfig, FusionConfig, TrainingRecord
from tools.autolora.encoder import WeightEncoder
from tools.autolora.errors import AutoLoRACheckpointError
from tools.autolora.gates import GateBank
from tools.weights.errors import WeightsError
from tools.weights.files import load_tensors, read_metadata, save_tensors

ENCODER_FORMAT = "diffgraph-autolora-encoder"
FUSION_FORMAT = "diffgraph-autolora-fusion"
VERSION = "1"
_TRAIN = {ENCODER_FORMAT: "encoder", FUSION_FORMAT: "fusion"}


def save_encoder(path: Path, encoder: WeightEncoder, record: TrainingRecord) -> Path:
    state = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
    return _save(path, state, ENCODER_FORMAT, encoder.config, record)


def load_encoder(path: Path) -> tuple[WeightEncoder, TrainingRecord]:
    tensors, config, record = _load(path, ENCODER_FORMAT, EncoderConfig)
    encoder = WeightEncoder(config)
    try:
        encoder.load_state_dict(tensors)
    except RuntimeError as exc:
        raise _damaged(path, ENCODER_FORMAT, exc) from exc
    return encoder.eval(), record


def save_gates(path: Path, gates: GateBank, record: TrainingRecord) -> Path:
    state = {k: v.cpu() for k, v in gates.named_tensors().items()}
    return _save(path, state, FUSION_FORMAT, gates.config, record)


def load_gates(path: Path) -> tuple[GateBank, TrainingRecord]:
    tensors, config, record = _load(path, FUSION_FORMAT, FusionConfig)
    gates = GateBank(config)
    try:
        gates.load_named_tensors(tensors)
    except (KeyError, RuntimeError) as exc:
        raise _damaged(path, FUSION_FORMAT, exc) from exc
    return gates, record


def _save(path: Path, state, fmt: str, config: BaseModel, record: TrainingRecord) -> Path:
    metadata = {
        "format": fmt,
        "version": VERSION,
        "config": config.model_dump_json(),
        "training": record.model_dump_json(),
    }
    path = Path(path)
    save_tensors(state, path, metadata)
    return path


def _load(path: Path, fmt: str, config_cls: type[BaseModel]):
    path = Path(path)
    if not path.is_file():
        raise AutoLoRACheckpointError(
            f"AutoLoRA checkpoint {path} does not exist. Fix: train it with "
            f"`diffgraph train-autolora {_TRAIN[fmt]}` or set its path in [autolora]"
        )
    if path.suffix != ".safetensors":
        raise AutoLoRACheckpointError(f"{path}: expected a .safetensors AutoLoRA checkpoint")
    try:
        metadata = read_metadata(path)
    except WeightsError as exc:
        raise AutoLoRACheckpointError(str(exc)) from exc
    if metadata.get("format") != fmt:
        raise AutoLoRACheckpointError(
            f"{path} is not a {fmt} checkpoint (its format metadata: "
            f"{metadata.get('format')!r}). Fix: point to the file `diffgraph train-autolora "
            f"{_TRAIN[fmt]}` wrote"
        )
    try:
        config = config_cls.model_validate_json(metadata["config"])
        record = TrainingRecord.model_validate_json(metadata.get("training", "{}"))
    except (KeyError, ValidationError, json.JSONDecodeError) as exc:
        raise _damaged(path, fmt, exc) from exc
    tensors = load_tensors(path)
    return {k: v.to(torch.float32) for k, v in tensors.items()}, config, record


def _damaged(path: Path, fmt: str, exc: Exception) -> AutoLoRACheckpointError:
    return AutoLoRACheckpointError(
        f"{path}: the {fmt} checkpoint does not fit its own config ({exc}); it is damaged "
        f"or from another version. Fix: retrain with `diffgraph train-autolora {_TRAIN[fmt]}`"
    )
