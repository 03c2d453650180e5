"""What an expert file is: format, family, modules, ranks, trigger words, hashes."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from graph.records import BaseFamily
from tools.weights import files
from tools.weights.checkpoints import Checkpoint
from tools.weights.errors import UnmatchedKeysError, UnsupportedFormatError, WeightsError
from tools.weights.families import module_shapes
from tools.weights.read import (
    adapter_file,
    check_targets,
    is_adapter_keys,
    pickled_list,
    read_adapter,
)
from tools.weights.stream import DEMO_KEY

KOHYA_FIELDS = (
    "ss_base_model_version",
    "ss_sd_model_name",
    "ss_network_module",
    "ss_network_dim",
    "ss_network_alpha",
    "ss_network_args",
    "ss_output_name",
    "ss_training_comment",
    "modelspec.architecture",
    "modelspec.title",
    "modelspec.trigger_phrase",
)


class ExpertInfo(BaseModel):
    """The summary ``diffgraph weights inspect`` prints."""

    path: str
    kind: Literal["peft", "ckpt"]
    format: str
    family: BaseFamily | None
    modules: int = Field(description="target modules (LoRA-type) or tensors (checkpoint)")
    components: list[str]
    ranks: dict[int, int] = Field(default_factory=dict, description="rank → module count")
    parameters: int
    trigger_words: list[str] = Field(default_factory=list)
    kohya: dict[str, str] = Field(default_factory=dict, description="kohya ss_* / modelspec")
    fits_full_size: bool | None = Field(
        None, description="every module matches the full-size model of the family"
    )
    unmatched: list[str] = Field(default_factory=list)
    sha256: str
    autov2: str
    size_bytes: int
    demo: str | None = Field(None, description="set on tiny demo files: what they are")


def trigger_words(metadata: Mapping[str, str], limit: int = 10) -> list[str]:
    """Trigger words: ``modelspec.trigger_phrase`` and the most frequent kohya tags."""
    words: list[str] = []
    phrase = metadata.get("modelspec.trigger_phrase", "")
    words += [w.strip() for w in phrase.split(",") if w.strip()]
    raw = metadata.get("ss_tag_frequency")
    if raw:
        try:
            folders = json.loads(raw)
        except json.JSONDecodeError:
            folders = {}
        counts: Counter[str] = Counter()
        for tags in folders.values() if isinstance(folders, dict) else []:
            if isinstance(tags, dict):
                for tag, count in tags.items():
                    if isinstance(count, int | float):
                        counts[str(tag).strip()] += int(count)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        words += [tag for tag, _ in ranked if tag and tag not in words]
    return words[:limit]


def inspect_expert(path: Path, allow_pickle: bool = False) -> ExpertInfo:
    """Describe a LoRA-type file, a single-file checkpoint or a diffusers folder."""
    path = Path(path)
    if path.is_dir() and (path / "model_index.json").is_file():
        return _inspect_checkpoint(path)
    weights, _ = adapter_file(path) if path.is_dir() else (path, None)
    if files.is_pickle(weights):
        if allow_pickle and pickled_list(weights) is not None:
            pass  # a cloneofsimo / GORS .pt list: read_adapter names or reads it
        elif not is_adapter_keys(list(files.load_tensors(weights, allow_pickle))):
            raise UnsupportedFormatError(
                f"{path} is a pickled checkpoint: checkpoints are read only from .safetensors "
                "files or diffusers folders. Fix: convert it to .safetensors"
            )
    elif not is_adapter_keys(list(files.tensor_shapes(weights))):
        return _inspect_checkpoint(path)
    adapter = read_adapter(path, allow_pickle=allow_pickle)
    metadata = adapter.metadata
    fits, unmatched = None, []
    if adapter.family is not None:
        try:
            check_targets(adapter, module_shapes(adapter.family), "full-size")
            fits = True
        except UnmatchedKeysError as exc:
            fits, unmatched = False, exc.keys
        except WeightsError:  # modules of other shapes (a tiny or pruned model)
            fits = False
    return ExpertInfo(
        path=str(path),
        kind="peft",
        format=adapter.format,
        family=adapter.family,
        modules=len(adapter.modules),
        components=adapter.components,
        ranks=adapter.ranks(),
        parameters=adapter.num_parameters(),
        trigger_words=trigger_words(metadata),
        kohya={k: metadata[k] for k in KOHYA_FIELDS if k in metadata},
        fits_full_size=fits,
        unmatched=unmatched[:20],
        demo=metadata.get(DEMO_KEY),
        **_hashes(path),
    )


def _inspect_checkpoint(path: Path) -> ExpertInfo:
    with Checkpoint(path) as checkpoint:
        metadata = checkpoint.metadata()
        names = checkpoint.keys()
        parameters = sum(_numel(checkpoint.shape(k)) for k in names)
        return ExpertInfo(
            path=str(path),
            kind="ckpt",
            format=checkpoint.format,
            family=checkpoint.family,
            modules=len(names),
            components=checkpoint.components(),
            parameters=parameters,
            trigger_words=trigger_words(metadata),
            kohya={k: metadata[k] for k in KOHYA_FIELDS if k in metadata},
            demo=metadata.get(DEMO_KEY),
            **_hashes(path),
        )


def _numel(shape: tuple[int, ...]) -> int:
    total = 1
    for size in shape:
        total *= size
    return total


def _hashes(path: Path) -> dict[str, object]:
    digest = files.sha256_file(path)
    size = (
        sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        if path.is_dir()
        else path.stat().st_size
    )
    return {"sha256": digest, "autov2": files.autov2(digest), "size_bytes": size}
