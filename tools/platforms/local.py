"""Local model folders (A1111 / ComfyUI): hash each file and describe it as best as possible.

For each weight file, in order: its ``.civitai.info`` sidecar (written by Civitai Helper:
the API's model-version JSON), else a look-up of its SHA-256 on Civitai when a client is
given (opt-in; the first network failure turns look-ups off for the rest of the scan), else
its A1111 ``.json`` sidecar (``activation text``, ``preferred weight``,
``description``), else its kohya ``ss_*`` / ``modelspec.*`` metadata and its file name.
Pickle files (``.ckpt`` / ``.pt`` / ``.bin``) are skipped unless ``allow_pickle``; they are
hashed, never loaded. Hashes are cached by (path, size, mtime) when a cache is given.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from graph.records import BaseFamily, ExpertKind
from tools.platforms.civitai import CivitaiClient
from tools.platforms.civitai_schema import base_family, parse_version_response
from tools.platforms.errors import MalformedResponseError, NotFoundError, PlatformError
from tools.platforms.hash_cache import HashCache
from tools.platforms.records import (
    PICKLE_SUFFIXES,
    PlatformFile,
    PlatformModel,
    PlatformVersion,
    Skipped,
)

log = logging.getLogger(__name__)

# Folder names A1111 / ComfyUI / Forge use, and the kind of expert each holds.
MODEL_FOLDERS: dict[str, ExpertKind] = {
    "Lora": ExpertKind.PEFT,
    "loras": ExpertKind.PEFT,
    "LyCORIS": ExpertKind.PEFT,
    "Stable-diffusion": ExpertKind.CKPT,
    "checkpoints": ExpertKind.CKPT,
}
_KOHYA_BASES = {
    "sd_v1": BaseFamily.SD15,
    "sd_v2": None,
    "sdxl_base_v1-0": BaseFamily.SDXL,
    "sdxl_base_v0-9": BaseFamily.SDXL,
    "flux1": BaseFamily.FLUX1,
}
_MODELSPEC_BASES = {
    "stable-diffusion-v1": BaseFamily.SD15,
    "stable-diffusion-xl-v1-base": BaseFamily.SDXL,
    "flux-1-dev": BaseFamily.FLUX1,
    "flux-1-schnell": BaseFamily.FLUX1,
}
_A1111_BASES = {"SD1": BaseFamily.SD15, "SDXL": BaseFamily.SDXL}


def find_model_files(
    roots: Sequence[Path], allow_pickle: bool = False
) -> Iterator[tuple[Path, ExpertKind] | Skipped]:
    """Weight files under A1111 / ComfyUI roots, ``models`` folders or the type folders."""
    seen: set[Path] = set()
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            yield Skipped(item=str(root), reason="not a folder")
            continue
        folders = [
            (folder, kind)
            for base in (root, root / "models")
            for name, kind in MODEL_FOLDERS.items()
            if (folder := base / name).is_dir()
        ]
        if not folders and root.name in MODEL_FOLDERS:
            folders = [(root, MODEL_FOLDERS[root.name])]
        if not folders:
            yield Skipped(
                item=str(root),
                reason=f"no model folder inside (looked for models/{{{','.join(MODEL_FOLDERS)}}})",
            )
        for folder, kind in folders:
            for path in sorted(folder.rglob("*")):
                if not path.is_file() or path.resolve() in seen:
                    continue
                suffix = path.suffix.lower()
                if suffix in PICKLE_SUFFIXES and not allow_pickle:
                    yield Skipped(item=str(path), reason="pickle file (pass --allow-pickle)")
                elif suffix == ".safetensors" or suffix in PICKLE_SUFFIXES:
                    seen.add(path.resolve())
                    yield path, kind


class LocalScanner:
    """Describes local weight files as platform records (``platform='local'``)."""

    def __init__(
        self,
        civitai: CivitaiClient | None = None,
        allow_pickle: bool = False,
        hash_cache: HashCache | None = None,
    ) -> None:
        self.civitai = civitai
        self.allow_pickle = allow_pickle
        self.hash_cache = hash_cache
        self.lookup_error: str | None = None  # set when look-ups were turned off

    def sha256(self, path: Path) -> str:
        """The file's SHA-256, from the cache when size and mtime are unchanged."""
        if self.hash_cache is not None:
            return self.hash_cache.sha256(path)
        from tools.weights.files import sha256_file

        return sha256_file(path)

    def scan(self, roots: Sequence[Path]) -> tuple[list[PlatformModel], list[Skipped]]:
        models, skipped = [], []
        for found in find_model_files(roots, self.allow_pickle):
            if isinstance(found, Skipped):
                skipped.append(found)
                continue
            path, kind = found
            try:
                models.append(self.describe(path, kind))
            except (PlatformError, OSError, ValueError) as exc:
                skipped.append(Skipped(item=str(path), reason=str(exc)[:200]))
        for s in skipped:
            log.warning("skipped %s: %s", s.item, s.reason)
        return models, skipped

    def describe(self, path: Path, kind: ExpertKind) -> PlatformModel:
        """One file as a one-version model whose id is the file's SHA-256 (first 12)."""
        from tools.weights.files import autov2

        sha = self.sha256(path)
        file = PlatformFile(
            name=path.name,
            size_bytes=path.stat().st_size,
            sha256=sha,
            autov2=autov2(sha).lower(),
            format="pickle" if path.suffix.lower() in PICKLE_SUFFIXES else "safetensors",
            role="Model",
            primary=True,
            local_path=str(path),
        )
        upstream = self._from_civitai_info(path) or self._lookup(sha)
        if upstream is not None:
            return self._as_local(upstream, file, kind)
        return self._from_file(path, file, kind)

    def _from_civitai_info(self, path: Path) -> PlatformModel | None:
        sidecar = path.with_suffix(".civitai.info")
        if not sidecar.is_file():
            return None
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8-sig"))
            return parse_version_response(data, "civitai", "https://civitai.com")
        except (ValueError, RecursionError, MalformedResponseError) as exc:  # JSON, UTF-8
            log.warning("ignoring %s: %s", sidecar, exc)
            return None

    def _lookup(self, sha: str) -> PlatformModel | None:
        if self.civitai is None or self.lookup_error is not None:
            return None
        try:
            return self.civitai.version_by_hash(sha)
        except NotFoundError:
            return None
        except PlatformError as exc:  # offline or Civitai down: back off once, not per file
            self.lookup_error = str(exc)[:300]
            log.warning(
                "Civitai look-up of %s failed (%s): no more look-ups in this scan", sha[:12], exc
            )
            return None

    def _as_local(self, upstream: PlatformModel, file: PlatformFile, kind: ExpertKind):
        version = upstream.versions[0]
        return upstream.model_copy(
            update={
                "platform": "local",
                "id": file.sha256[:12],
                "kind": upstream.kind or kind,
                "versions": [version.model_copy(update={"id": file.sha256[:12], "files": [file]})],
                "license": {
                    **upstream.license,
                    "civitai_model_id": upstream.id,
                    "civitai_version_id": version.id,
                },
            }
        )

    def _from_file(self, path: Path, file: PlatformFile, kind: ExpertKind) -> PlatformModel:
        a1111 = _a1111_sidecar(path)
        meta = _safetensors_metadata(path) if file.format == "safetensors" else {}
        words = _split_words(a1111.get("activation text")) or _kohya_trigger_words(meta)
        base = _A1111_BASES.get(str(a1111.get("sd version")))
        base = base or _kohya_base(meta) or _detect_base(path, kind, file.format)
        name = meta.get("modelspec.title") or meta.get("ss_output_name") or path.stem
        description = a1111.get("description") or meta.get("modelspec.description")
        weight = a1111.get("preferred weight")
        version = PlatformVersion(
            id=file.sha256[:12],
            name=path.stem,
            base=base,
            trained_words=words,
            description=description if isinstance(description, str) else None,
            files=[file],
            recommended_weight=float(weight)
            if isinstance(weight, int | float) and weight
            else None,
        )
        return PlatformModel(
            platform="local",
            id=file.sha256[:12],
            name=str(name)[:300],
            type="LORA" if kind is ExpertKind.PEFT else "Checkpoint",
            kind=kind,
            description=version.description,
            tags=[path.parent.name] if path.parent.name not in MODEL_FOLDERS else [],
            homepage_url=None,
            versions=[version],
        )


def _a1111_sidecar(path: Path) -> dict:
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        return {}
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8-sig"))
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, nested too deeply
        log.warning("ignoring %s: %s", sidecar, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _safetensors_metadata(path: Path) -> dict[str, str]:
    from tools.weights.files import read_metadata

    return read_metadata(path)  # a broken file raises a WeightsError (a ValueError)


def _split_words(text: object) -> list[str]:
    if not isinstance(text, str):
        return []
    return [w.strip() for w in text.split(",") if w.strip()]


def _kohya_trigger_words(meta: dict[str, str], top: int = 3) -> list[str]:
    """The most frequent training captions' tags (kohya ``ss_tag_frequency``)."""
    try:
        frequency = json.loads(meta.get("ss_tag_frequency") or "{}")
    except json.JSONDecodeError:
        return []
    counts: Counter[str] = Counter()
    for tags in frequency.values() if isinstance(frequency, dict) else []:
        if isinstance(tags, dict):
            counts.update({str(t).strip(): int(n) for t, n in tags.items() if str(t).strip()})
    return [tag for tag, _ in counts.most_common(top)]


def _kohya_base(meta: dict[str, str]) -> BaseFamily | None:
    if meta.get("ss_base_model_version") in _KOHYA_BASES:
        return _KOHYA_BASES[meta["ss_base_model_version"]]
    architecture = meta.get("modelspec.architecture", "").split("/")[0]
    if architecture in _MODELSPEC_BASES:
        return _MODELSPEC_BASES[architecture]
    return base_family(meta.get("ss_sd_model_name"))


def _detect_base(path: Path, kind: ExpertKind, fmt: str | None) -> BaseFamily | None:
    """Base family from the tensor names (safetensors header only)."""
    if fmt != "safetensors":
        return None
    from tools.weights.families import detect_checkpoint_family, detect_lora_family
    from tools.weights.files import tensor_shapes

    shapes = tensor_shapes(path)
    if kind is ExpertKind.PEFT:
        return detect_lora_family(shapes, shapes)
    return detect_checkpoint_family(shapes)
