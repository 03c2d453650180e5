"""Planner checkpoints: one ``.safetensors`` file (no pickle), written atomically.

Tensors: ``model.<name>`` (weights), ``optim.<param>.<key>`` (AdamW state) and
``rng.torch`` (the trainer's RNG state). Metadata (JSON strings): the ``PlannerConfig``
(sizes, wiring, ablations, metric names and scales) and the ``TrainState`` (step,
baseline, environment, training settings).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from planner.config import PlannerConfig
from planner.errors import CheckpointError
from planner.model import MergingPlanner

FORMAT = "diffgraph-planner"
VERSION = "1"


class TrainState(BaseModel):
    """Where training stands; stored beside the weights."""

    model_config = ConfigDict(extra="forbid")

    step: int = 0
    baseline: float | None = Field(None, description="running mean of the rewards so far")
    env: str = "none"
    prompts: int = Field(0, description="training prompts of the run")
    synthetic: bool = Field(False, description="trained on the synthetic reward")
    demo: bool = Field(False, description="trained on a demo reward or demo backends")
    settings: dict = Field(default_factory=dict)


@dataclass
class Checkpoint:
    config: PlannerConfig
    state: TrainState
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict | None
    rng_state: torch.Tensor | None

    def build_model(self) -> MergingPlanner:
        model = MergingPlanner(self.config)
        try:
            model.load_state_dict(self.model_state)
        except RuntimeError as exc:
            raise CheckpointError(
                f"planner checkpoint weights do not fit its own config: {exc}; the file is "
                "damaged or from another DiffGraph version: retrain with `diffgraph "
                "train-planner`"
            ) from exc
        return model


def save_checkpoint(
    path: Path,
    model: MergingPlanner,
    state: TrainState,
    optimizer: torch.optim.Optimizer | None = None,
    rng_state: torch.Tensor | None = None,
) -> None:
    """Write the checkpoint to ``path`` (temporary file + ``os.replace``)."""
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.model_dump_json(),
        "state": state.model_dump_json(),
        "metric_names": json.dumps(model.config.metric_names),
    }
    if optimizer is not None:
        optim = optimizer.state_dict()
        for param, values in optim["state"].items():
            for key, value in values.items():
                tensors[f"optim.{param}.{key}"] = torch.as_tensor(value).contiguous()
        metadata["optimizer_groups"] = json.dumps(optim["param_groups"])
    if rng_state is not None:
        tensors["rng.torch"] = rng_state.contiguous()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; never unpickles."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"planner checkpoint {path} does not exist: train one with `diffgraph "
            "train-planner`, or set planner.checkpoint (DIFFGRAPH_PLANNER__CHECKPOINT)"
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CheckpointError(
            f"{path} is not a readable safetensors planner checkpoint ({exc}): retrain with "
            "`diffgraph train-planner`"
        ) from exc
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a DiffGraph planner checkpoint (format "
            f"{metadata.get('format')!r}, expected {FORMAT!r})"
        )
    if metadata.get("version") != VERSION:
        raise CheckpointError(
            f"{path} is planner checkpoint version {metadata.get('version')}, this DiffGraph "
            f"reads version {VERSION}: retrain with `diffgraph train-planner`"
        )
    try:
        config = PlannerConfig.model_validate_json(metadata["config"])
        state = TrainState.model_validate_json(metadata["state"])
    except (KeyError, ValidationError) as exc:
        raise CheckpointError(f"{path} has a malformed planner config: {exc}") from exc
    return Checkpoint(
        config=config,
        state=state,
        model_state={k[6:]: v for k, v in tensors.items() if k.startswith("model.")},
        optimizer_state=_optimizer_state(tensors, metadata),
        rng_state=tensors.get("rng.torch"),
    )


def _optimizer_state(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> dict | None:
    if "optimizer_groups" not in metadata:
        return None
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, param, name = key.split(".", 2)
            state.setdefault(int(param), {})[name] = value
    return {"state": state, "param_groups": json.loads(metadata["optimizer_groups"])}
