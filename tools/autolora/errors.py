"""Errors of the AutoLoRA baseline; each names the thing, what was expected and the fix."""

from __future__ import annotations

from graph.errors import DiffGraphError


class AutoLoRAError(DiffGraphError, ValueError):
    """A request the AutoLoRA retriever or gated fusion cannot serve as asked."""


class AutoLoRACheckpointError(AutoLoRAError):
    """A missing, damaged or mismatched encoder or fusion checkpoint."""


class TrainingDataError(AutoLoRAError):
    """Too little (or unusable) data to train the encoder or the fusion gates."""


class FusionError(AutoLoRAError):
    """LoRAs that cannot be fused into the loaded pipeline."""
