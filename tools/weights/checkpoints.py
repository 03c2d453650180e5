"""Checkpoint experts read tensor by tensor: single-file LDM ``.safetensors`` or diffusers folders.

A :class:`Checkpoint` answers in both namings: :meth:`Checkpoint.diffusers_tensor` by
canonical diffusers name (``unet.conv_in.weight``) and :meth:`Checkpoint.ldm_tensor` by
LDM key (``model.diffusion_model.input_blocks.0.0.weight``), converting on the fly, so a
merge never needs a whole model in memory.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from graph.records import BaseFamily
from tools.weights import files
from tools.weights.errors import UnsupportedFormatError, WeightsError
from tools.weights.families import detect_checkpoint_family
from tools.weights.keymap import LDM_PREFIXES, Link, ldm_aliases, link_for, required_ldm_keys
from tools.weights.names import canonical_name

Layout = Literal["ldm", "diffusers"]
_WEIGHT_NAMES = ("diffusion_pytorch_model", "model")


class Checkpoint:
    """A full checkpoint opened for streaming (memory-mapped safetensors)."""

    def __init__(
        self,
        path: Path,
        family: BaseFamily | None = None,
        configs: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.path = Path(path)
        self.configs = dict(configs or {})
        self._sources: dict[Path, files.TensorSource] = {}
        self._where: dict[str, tuple[Path, str]] = {}  # name in own layout -> (file, key)
        if self.path.is_dir():
            self.layout: Layout = "diffusers"
            self._index_folder()
        elif self.path.is_file():
            if files.is_pickle(self.path):
                raise UnsupportedFormatError(
                    f"{self.path} is a pickled checkpoint: streaming needs .safetensors. Fix: "
                    "convert it (diffgraph accepts pickles only for LoRA-type files, with "
                    "--allow-pickle)"
                )
            self.layout = "ldm"
            for key in files.tensor_shapes(self.path):
                self._where[ldm_aliases(key)] = (self.path, key)
        else:
            raise WeightsError(f"checkpoint {self.path} does not exist")
        detected = detect_checkpoint_family(self._where)
        self.family = family or detected
        if self.family is None:
            raise UnsupportedFormatError(
                f"{self.path}: the keys match no SD 1.5, SDXL or FLUX.1 checkpoint layout"
            )
        self._links: dict[str, list[Link]] | None = None

    # ------------------------------------------------------------------ layout
    def _index_folder(self) -> None:
        index = self.path / "model_index.json"
        names = (
            [k for k in _json_object(index) if not k.startswith("_")]
            if index.is_file()
            else [p.name for p in self.path.iterdir() if p.is_dir()]
        )
        for component in names:
            folder = self.path / component
            if not folder.is_dir():
                continue
            config = folder / "config.json"
            if component not in self.configs and config.is_file():
                self.configs[component] = _json_object(config)
            for file in sorted(folder.glob("*.safetensors")):
                if not file.stem.startswith(_WEIGHT_NAMES):
                    continue
                for key in files.tensor_shapes(file):
                    self._where[canonical_name(f"{component}.{key}")] = (file, key)
            pickled = any(any(folder.glob(f"{n}*.bin")) for n in _WEIGHT_NAMES)
            if pickled and not any(folder.glob("*.safetensors")):
                raise UnsupportedFormatError(
                    f"{folder} holds only pickled .bin weights: streaming needs .safetensors. "
                    "Fix: re-save the pipeline with safe_serialization=True"
                )
        if not self._where:
            raise UnsupportedFormatError(
                f"{self.path} is a folder without diffusers component weights "
                "(<component>/diffusion_pytorch_model.safetensors or model.safetensors)"
            )

    @property
    def format(self) -> str:
        return "ldm-checkpoint" if self.layout == "ldm" else "diffusers-checkpoint"

    def keys(self) -> list[str]:
        """Tensor names in the checkpoint's own layout."""
        return list(self._where)

    def shape(self, name: str) -> tuple[int, ...]:
        file, key = self._where[name]
        return self._source(file).shapes[key]

    def _source(self, file: Path) -> files.TensorSource:
        if file not in self._sources:
            self._sources[file] = files.TensorSource(file)
        return self._sources[file]

    def _get(self, name: str) -> Tensor:
        file, key = self._where[name]
        return self._source(file).get(key)

    def metadata(self) -> dict[str, str]:
        return files.read_metadata(self.path) if self.layout == "ldm" else {}

    # ------------------------------------------------------------------ access
    def diffusers_tensor(self, name: str, link: Link | None = None) -> Tensor | None:
        """The tensor of canonical diffusers parameter ``name`` (None if absent)."""
        if self.layout == "diffusers":
            return self._get(name) if name in self._where else None
        component, _, rest = name.partition(".")
        link = link or link_for(self.family, component, rest, self.configs.get(component))
        if link is None or link.ldm not in self._where:
            return None
        return link.to_diffusers(self._get(link.ldm))

    def diffusers_shape(self, name: str) -> tuple[int, ...] | None:
        """Shape of canonical diffusers parameter ``name`` (None if absent), header only."""
        if self.layout == "diffusers":
            return self.shape(name) if name in self._where else None
        component, _, rest = name.partition(".")
        link = link_for(self.family, component, rest, self.configs.get(component))
        if link is None or link.ldm not in self._where:
            return None
        return link.diffusers_shape(self.shape(link.ldm))

    def ldm_tensor(self, key: str) -> Tensor | None:
        """The tensor of LDM key ``key`` (None if absent), assembled from diffusers parts."""
        if self.layout == "ldm":
            return self._get(key) if key in self._where else None
        parts = self.links_by_ldm().get(key)
        if not parts:
            return None
        tensors = [self.diffusers_tensor(link.diffusers) for link in parts]
        if any(t is None for t in tensors):
            return None
        pieces = [link.to_ldm(t) for link, t in zip(parts, tensors, strict=True)]
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)

    def links_by_ldm(self) -> dict[str, list[Link]]:
        """LDM key → the diffusers tensors it is made of (diffusers folders)."""
        if self._links is None:
            grouped: dict[str, list[Link]] = defaultdict(list)
            for name in self._where:
                component, _, rest = name.partition(".")
                link = link_for(self.family, component, rest, self.configs.get(component))
                if link is not None:
                    grouped[link.ldm].append(link)
            self._links = {
                k: sorted(v, key=lambda link: link.chunk[0] if link.chunk else 0)
                for k, v in grouped.items()
            }
        return self._links

    def ldm_keys(self) -> list[str]:
        """Keys of the checkpoint in the LDM layout (what a single-file export holds)."""
        if self.layout == "ldm":
            return list(self._where)
        return list(self.links_by_ldm())

    def missing_keys(self) -> list[str]:
        """LDM keys of the family's complete key set that this checkpoint lacks."""
        return sorted(required_ldm_keys(self.family) - set(self.ldm_keys()))

    def ldm_shape(self, key: str) -> tuple[int, ...]:
        if self.layout == "ldm":
            return self.shape(key)
        parts = self.links_by_ldm()[key]
        shapes = [self.shape(link.diffusers) for link in parts]
        link = parts[0]
        if link.op == "conv1x1":
            return (*shapes[0], 1, 1)
        if link.op == "transpose":
            return tuple(reversed(shapes[0]))
        if link.chunk:
            return (sum(s[0] for s in shapes), *shapes[0][1:])
        return shapes[0]

    def ldm_dtype(self, key: str) -> torch.dtype:
        name = key if self.layout == "ldm" else self.links_by_ldm()[key][0].diffusers
        file, inner = self._where[name]
        return self._source(file).dtype(inner)

    def components(self) -> list[str]:
        """Diffusers components present (``unet``, ``vae``, ``text_encoder`` …)."""
        if self.layout == "diffusers":
            return sorted({n.split(".", 1)[0] for n in self._where})
        prefixes = LDM_PREFIXES.get(self.family, {})
        return sorted(c for c, p in prefixes.items() if any(k.startswith(p) for k in self._where))

    def close(self) -> None:
        for source in self._sources.values():
            source.close()
        self._sources.clear()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _json_object(path: Path) -> dict:
    """A JSON object file of a diffusers folder; a clear error for anything else."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # JSON and UTF-8 errors
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise UnsupportedFormatError(
            f"{path} is not readable JSON ({reason}); expected a diffusers pipeline folder. "
            "Fix: re-download the folder"
        ) from exc
    if not isinstance(data, dict):
        raise UnsupportedFormatError(
            f"{path} holds a JSON {type(data).__name__}, expected an object; the diffusers "
            "folder is broken. Fix: re-download the folder"
        )
    return data
