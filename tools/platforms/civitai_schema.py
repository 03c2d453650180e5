"""Parsing Civitai REST API responses (``/api/v1/models``, ``/model-versions``) into records.

Lenient where the API is inconsistent (extra fields, nulls), strict where it matters (ids,
hashes). A malformed model or version is skipped and reported, never fatal; a page that is
not the documented shape at all raises ``MalformedResponseError``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from graph.errors import first_error
from graph.records import BaseFamily, ExpertKind
from tools.platforms.errors import MalformedResponseError
from tools.platforms.records import (
    ModelPage,
    PlatformFile,
    PlatformImage,
    PlatformModel,
    PlatformName,
    PlatformVersion,
    Skipped,
)

log = logging.getLogger(__name__)

# The API's baseModel labels of each family (sent as ``baseModels`` filters).
BASE_MODELS: dict[BaseFamily, tuple[str, ...]] = {
    BaseFamily.SD15: ("SD 1.5", "SD 1.5 LCM", "SD 1.5 Hyper", "SD 1.4"),
    BaseFamily.SDXL: (
        "SDXL 1.0",
        "SDXL 0.9",
        "SDXL 1.0 LCM",
        "SDXL Turbo",
        "SDXL Lightning",
        "SDXL Hyper",
        "Pony",
        "Illustrious",
        "NoobAI",
    ),
    BaseFamily.FLUX1: ("Flux.1 D", "Flux.1 S", "Flux.1 Krea", "Flux.1 Kontext"),
}
_FAMILY_OF = {label.lower(): family for family, labels in BASE_MODELS.items() for label in labels}

# The API's model type labels of each expert type.
MODEL_TYPES: dict[str, tuple[str, ...]] = {
    "checkpoint": ("Checkpoint",),
    "lora": ("LORA", "LoCon", "DoRA"),
}
_KIND_OF = {
    "checkpoint": ExpertKind.CKPT,
    "lora": ExpertKind.PEFT,
    "locon": ExpertKind.PEFT,
    "dora": ExpertKind.PEFT,
    "lycoris": ExpertKind.PEFT,
}
_FORMATS = {"safetensor": "safetensors", "pickletensor": "pickle", "diffusers": "diffusers"}


def base_family(label: str | None) -> BaseFamily | None:
    return _FAMILY_OF.get((label or "").strip().lower())


def expert_kind(type_label: str | None) -> ExpertKind | None:
    return _KIND_OF.get((type_label or "").strip().lower())


class _Raw(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _RawFile(_Raw):
    name: str
    sizeKB: float | None = None
    type: str | None = None
    metadata: dict[str, Any] | None = None
    hashes: dict[str, str | None] | None = None
    downloadUrl: str | None = None
    primary: bool | None = None


class _RawImage(_Raw):
    url: str | None = None
    meta: dict[str, Any] | None = None


class _RawVersion(_Raw):
    id: int
    name: str | None = None
    modelId: int | None = None
    baseModel: str | None = None
    description: str | None = None
    publishedAt: datetime | None = None
    trainedWords: list[str] | None = None
    files: list[_RawFile] | None = None
    images: list[_RawImage] | None = None
    model: dict[str, Any] | None = None


class _RawModel(_Raw):
    id: int
    name: str
    type: str
    description: str | None = None
    nsfw: bool | None = None
    tags: list[str] | None = None
    creator: dict[str, Any] | None = None
    allowNoCredit: bool | None = None
    allowCommercialUse: list[str] | str | None = None
    allowDerivatives: bool | None = None
    allowDifferentLicense: bool | None = None
    modelVersions: list[Any] | None = None


def _file(raw: _RawFile) -> PlatformFile:
    hashes = {k.lower(): v for k, v in (raw.hashes or {}).items() if v}
    fmt = str((raw.metadata or {}).get("format") or "").lower()
    return PlatformFile(
        name=raw.name,
        size_bytes=None if raw.sizeKB is None else round(raw.sizeKB * 1024),
        sha256=hashes.get("sha256"),
        autov2=(hashes.get("autov2") or "").lower() or None,
        format=_FORMATS.get(fmt, "other" if fmt else None),
        role=raw.type,
        primary=bool(raw.primary),
        download_url=raw.downloadUrl,
    )


def _image(raw: _RawImage) -> PlatformImage:
    meta = raw.meta or {}
    prompt = meta.get("prompt")
    negative = meta.get("negativePrompt")
    return PlatformImage(
        url=raw.url,
        prompt=prompt if isinstance(prompt, str) and prompt.strip() else None,
        negative_prompt=negative if isinstance(negative, str) and negative.strip() else None,
    )


def _trained_words(words: list[str] | None) -> list[str]:
    """Trigger words; the API sometimes packs several into one comma-separated string."""
    out: list[str] = []
    for word in words or []:
        for part in str(word).split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return out


def parse_version(data: Any) -> PlatformVersion:
    """One ``modelVersions`` item (or a ``/model-versions/{id}`` body); raises ValueError."""
    raw = _RawVersion.model_validate(data)
    return PlatformVersion(
        id=str(raw.id),
        name=raw.name or "",
        base_model=raw.baseModel,
        base=base_family(raw.baseModel),
        trained_words=_trained_words(raw.trainedWords),
        description=raw.description,
        published_at=raw.publishedAt,
        files=[_file(f) for f in raw.files or []],
        images=[_image(i) for i in raw.images or []],
    )


def _license(raw: _RawModel) -> dict[str, str | bool | list[str] | None]:
    commercial = raw.allowCommercialUse
    return {
        "allow_no_credit": raw.allowNoCredit,
        "allow_commercial_use": [commercial] if isinstance(commercial, str) else commercial,
        "allow_derivatives": raw.allowDerivatives,
        "allow_different_license": raw.allowDifferentLicense,
    }


def parse_model(
    data: Any, platform: PlatformName, site_url: str
) -> tuple[PlatformModel, list[Skipped]]:
    """One ``items`` entry; malformed versions are skipped and reported. Raises ValueError."""
    raw = _RawModel.model_validate(data)
    versions, skipped = [], []
    for item in raw.modelVersions or []:
        try:
            versions.append(parse_version(item))
        except (ValidationError, ValueError) as exc:
            vid = item.get("id") if isinstance(item, dict) else None
            skipped.append(
                Skipped(item=f"{platform} model {raw.id} version {vid}", reason=_reason(exc))
            )
    model = PlatformModel(
        platform=platform,
        id=str(raw.id),
        name=raw.name.strip() or f"model {raw.id}",
        type=raw.type,
        kind=expert_kind(raw.type),
        description=raw.description,
        tags=[t for t in raw.tags or [] if isinstance(t, str)],
        nsfw=bool(raw.nsfw),
        creator=(raw.creator or {}).get("username"),
        license=_license(raw),
        homepage_url=f"{site_url.rstrip('/')}/models/{raw.id}",
        versions=versions,
        demo=platform == "demo",
    )
    return model, skipped


def parse_models_page(data: Any, platform: PlatformName, site_url: str) -> ModelPage:
    """A ``GET /api/v1/models`` body; malformed items are skipped and reported."""
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        got = type(data).__name__ if not isinstance(data, dict) else f"keys {sorted(data)[:8]}"
        raise MalformedResponseError(
            f"{platform} model listing: expected a JSON object with an 'items' list, got {got}; "
            "check the platform URL (it must serve the Civitai REST API /api/v1/models)"
        )
    models, skipped = [], []
    for position, item in enumerate(data["items"]):
        try:
            model, lost = parse_model(item, platform, site_url)
        except (ValidationError, ValueError) as exc:
            ident = item.get("id") if isinstance(item, dict) else None
            skipped.append(
                Skipped(item=f"{platform} item #{position} (id {ident})", reason=_reason(exc))
            )
            continue
        models.append(model)
        skipped.extend(lost)
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    cursor = metadata.get("nextCursor")
    for s in skipped:
        log.warning("skipped %s: %s", s.item, s.reason)
    return ModelPage(
        models=models,
        skipped=skipped,
        next_cursor=str(cursor) if cursor not in (None, "") else None,
    )


def parse_version_response(data: Any, platform: PlatformName, site_url: str) -> PlatformModel:
    """A ``/model-versions/{id}`` or ``/by-hash/{sha256}`` body as a one-version model."""
    try:
        version = parse_version(data)
        raw = _RawVersion.model_validate(data)
    except (ValidationError, ValueError) as exc:
        raise MalformedResponseError(
            f"{platform} model version: unexpected response ({_reason(exc)}); check the "
            "platform URL"
        ) from exc
    model = raw.model or {}
    if raw.modelId is None:
        raise MalformedResponseError(
            f"{platform} model version {raw.id}: the response has no modelId; check the "
            "platform URL"
        )
    type_label = str(model.get("type") or "")
    return PlatformModel(
        platform=platform,
        id=str(raw.modelId),
        name=str(model.get("name") or f"model {raw.modelId}"),
        type=type_label,
        kind=expert_kind(type_label),
        nsfw=bool(model.get("nsfw")),
        homepage_url=f"{site_url.rstrip('/')}/models/{raw.modelId}",
        versions=[version],
        demo=platform == "demo",
    )


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return first_error(exc, got_limit=60)
    return str(exc)[:200]
