"""Loading diffusers pipelines of SD 1.5, SDXL and FLUX.1 from local paths, offline.

A diffusers folder loads as is. A single-file checkpoint (what Civitai serves) needs the
configs and tokenizers of its base model: from ``config_dir`` (a local diffusers folder of
the same family, weights not needed) or else from the local Hugging Face cache. FLUX.1
single files hold the transformer only; the other components come from ``config_dir``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from graph.records import BaseFamily
from tools.generation.errors import ModelLoadError

logger = logging.getLogger(__name__)

PIPELINES = {
    BaseFamily.SD15: "StableDiffusionPipeline",
    BaseFamily.SDXL: "StableDiffusionXLPipeline",
    BaseFamily.FLUX1: "FluxPipeline",
}
# Components whose weights experts change, per family (what a merge plan is applied to).
MERGE_COMPONENTS = {
    BaseFamily.SD15: ("unet", "text_encoder"),
    BaseFamily.SDXL: ("unet", "text_encoder", "text_encoder_2"),
    BaseFamily.FLUX1: ("transformer", "text_encoder"),
}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin", ".pth")


@dataclass
class LoadedPipeline:
    """A pipeline with its family; ``demo`` when its weights are the tiny random ones."""

    pipe: Any
    family: BaseFamily
    demo: bool
    source: str


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; anything else as given, once
    this machine is known to have it."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    fix = "Fix: set device (DIFFGRAPH_DEVICE) to auto or cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ModelLoadError(
            f"device {name!r} is not a torch device (cuda, cuda:N, mps). {fix}"
        ) from exc
    if device.type == "cuda":
        if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
            missing = f"this torch ({torch.__version__}) is built without CUDA"
        elif not torch.cuda.is_available():
            missing = "no CUDA GPU is visible (driver, CUDA_VISIBLE_DEVICES)"
        elif (device.index or 0) >= torch.cuda.device_count():
            missing = f"this machine has {torch.cuda.device_count()} CUDA GPU(s)"
        else:
            return name
        raise ModelLoadError(f"device {name!r} is not available: {missing}. {fix}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError(f"device {name!r} is not available on this machine. {fix}")
    return name


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """The torch dtype; half precision on a CPU falls back to float32 (with a warning)."""
    dtype = DTYPES[name]
    if device == "cpu" and dtype != torch.float32:
        logger.warning("%s is slow or unsupported on CPU: using float32", name)
        return torch.float32
    return dtype


def folder_family(folder: Path) -> BaseFamily:
    """The family of a diffusers folder, from its ``model_index.json``."""
    index = folder / "model_index.json"
    if not index.is_file():
        raise ModelLoadError(
            f"{folder} is a folder without model_index.json: expected a diffusers pipeline "
            "folder. Fix: point to the folder that holds model_index.json, or to a "
            "single-file .safetensors checkpoint"
        )
    name = json.loads(index.read_text()).get("_class_name", "")
    by_length = sorted(PIPELINES.items(), key=lambda item: -len(item[1]))
    for family, cls in by_length:  # StableDiffusionXL… before StableDiffusion…
        if name.startswith(cls.removesuffix("Pipeline")):
            return family
    raise ModelLoadError(
        f"{folder} holds a {name or 'unknown'} pipeline: expected one of "
        f"{', '.join(PIPELINES.values())}"
    )


def file_family(path: Path) -> BaseFamily:
    """The family of a single-file checkpoint, from its tensor names."""
    from tools.weights.families import detect_checkpoint_family
    from tools.weights.files import tensor_shapes

    if path.suffix.lower() != ".safetensors":
        raise ModelLoadError(
            f"cannot tell the base family of pickled file {path} without loading it. "
            "Fix: convert it to .safetensors"
        )
    family = detect_checkpoint_family(tensor_shapes(path))
    if family is None:
        raise ModelLoadError(
            f"{path} has no tensor names of an SD 1.5, SDXL or FLUX.1 checkpoint. "
            "Fix: give a full base-model checkpoint (not a LoRA or a VAE)"
        )
    return family


def load_pipeline(
    path: Path,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    config_dir: Path | None = None,
    allow_pickle: bool = False,
) -> LoadedPipeline:
    """The pipeline stored at ``path`` (diffusers folder or single file), on ``device``."""
    from tools.tiny.sd15 import is_demo_model

    path = Path(path)
    if not path.exists():
        raise ModelLoadError(
            f"base model {path} does not exist. Fix: set base_model (DIFFGRAPH_BASE_MODEL) "
            "to a single-file .safetensors checkpoint or a diffusers folder"
        )
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()  # component-loading bars would litter the CLI
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    family = detect_family(path, allow_pickle)
    if path.is_dir():
        pipe = _from_folder(path, family, torch_dtype)
    else:
        pipe = _from_single_file(path, family, torch_dtype, config_dir)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    demo = is_demo_model(path)
    logger.info("loaded %s pipeline from %s on %s%s", family.value, path, device, " (demo)" * demo)
    return LoadedPipeline(pipe=pipe, family=family, demo=demo, source=str(path))


def detect_family(path: Path, allow_pickle: bool = False) -> BaseFamily:
    """The family of a base model (folder or single file) without loading its weights."""
    from tools.weights.errors import PickleRefusedError
    from tools.weights.files import is_pickle

    path = Path(path)
    if path.is_dir():
        return folder_family(path)
    if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
        raise ModelLoadError(
            f"{path} is neither a diffusers folder nor a checkpoint file "
            f"({', '.join(SINGLE_FILE_SUFFIXES)})"
        )
    if is_pickle(path):
        if not allow_pickle:
            raise PickleRefusedError(path)
        raise ModelLoadError(
            f"{path} is pickled: its family cannot be read from a header. Fix: convert it to "
            ".safetensors (diffusers then loads it with torch.load(weights_only=True) only)"
        )
    return file_family(path)


def _from_folder(folder: Path, family: BaseFamily, dtype: torch.dtype):
    import diffusers

    cls = getattr(diffusers, PIPELINES[family])
    extra = (
        {"safety_checker": None, "requires_safety_checker": False}
        if family == BaseFamily.SD15
        else {}
    )
    try:
        return cls.from_pretrained(folder, dtype=dtype, local_files_only=True, **extra)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load diffusers folder {folder}: {exc}") from exc


def _from_single_file(path: Path, family: BaseFamily, dtype: torch.dtype, config_dir: Path | None):
    import diffusers

    cls = getattr(diffusers, PIPELINES[family])
    config = str(config_dir) if config_dir else None
    if config_dir is not None and not (Path(config_dir) / "model_index.json").is_file():
        raise ModelLoadError(
            f"generation.config_dir {config_dir} has no model_index.json: expected a local "
            f"diffusers folder of a {family.value} pipeline (configs and tokenizers)"
        )
    try:
        if family == BaseFamily.FLUX1:
            if config is None:
                raise ModelLoadError(_config_fix(path, family))
            transformer = diffusers.FluxTransformer2DModel.from_single_file(
                str(path), config=config, subfolder="transformer", dtype=dtype,
                local_files_only=True,
            )  # fmt: skip
            return cls.from_pretrained(
                config, transformer=transformer, dtype=dtype, local_files_only=True
            )
        extra = {"safety_checker": None} if family == BaseFamily.SD15 else {}
        return cls.from_single_file(
            str(path), config=config, dtype=dtype, local_files_only=True, **extra
        )
    except ModelLoadError:
        raise
    except Exception as exc:  # diffusers raises OSError / ValueError / its own errors here
        raise ModelLoadError(f"{_config_fix(path, family)} (diffusers said: {exc})") from exc


def _config_fix(path: Path, family: BaseFamily) -> str:
    return (
        f"cannot load single-file {family.value} checkpoint {path} offline: it needs the "
        f"configs and tokenizers of its base model. Fix: set generation.config_dir "
        f"(DIFFGRAPH_GENERATION__CONFIG_DIR) to a local diffusers folder of {family.value} "
        "(weights not needed), or put that base repository in the Hugging Face cache"
    )
