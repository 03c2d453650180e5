"""Writing canonical adapters as kohya or diffusers ``.safetensors`` files."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from tools.weights import diffusers_lora, files, kohya
from tools.weights.adapter import Adapter
from tools.weights.errors import WeightsError
from tools.weights.read import DIFFUSERS_LORA_FILE

logger = logging.getLogger(__name__)

AdapterFileFormat = Literal["kohya", "diffusers"]


def save_adapter(adapter: Adapter, path: Path, format: AdapterFileFormat = "kohya") -> Path:
    """Write ``adapter`` as a kohya or diffusers ``.safetensors`` file; returns the file.

    A folder ``path`` (existing, or without a suffix) gets diffusers' file name inside.
    """
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / (DIFFUSERS_LORA_FILE if format == "diffusers" else "adapter.safetensors")
    if format == "kohya":
        state = kohya.kohya_state(adapter)
        metadata = dict(adapter.metadata)
    elif format == "diffusers":
        state, metadata = diffusers_lora.diffusers_state(adapter)
    else:
        raise WeightsError(f"unknown adapter format {format!r}: expected 'kohya' or 'diffusers'")
    files.save_tensors(state, path, metadata)
    logger.debug("wrote %s adapter with %d modules to %s", format, len(adapter.modules), path)
    return path
