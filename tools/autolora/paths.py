"""Where AutoLoRA files live by default (under ``<data_dir>/autolora/``)."""

from __future__ import annotations

from pathlib import Path

FOLDER = "autolora"


def encoder_path(settings) -> Path:
    """The weight-encoder checkpoint of ``settings`` (tools.settings.Settings)."""
    return (
        settings.autolora.encoder_checkpoint or settings.data_dir / FOLDER / "encoder.safetensors"
    )


def fusion_path(settings) -> Path:
    """The fusion-gate checkpoint of ``settings``."""
    return settings.autolora.fusion_checkpoint or settings.data_dir / FOLDER / "fusion.safetensors"


def embeddings_cache_path(settings) -> Path:
    """The cache of LoRA weight embeddings (keyed by weights file and encoder)."""
    return settings.data_dir / FOLDER / "embeddings.npz"
