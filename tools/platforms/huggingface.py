"""Hugging Face Hub: LoRAs and fine-tunes of a base model, model cards, safetensors files.

Listing and repository metadata go through ``huggingface_hub.HfApi`` (``base_model:adapter:``
and ``base_model:finetune:`` filters); the model card and weight files are fetched from
``<endpoint>/<repo>/resolve/<revision>/<file>`` by the shared rate-limited HTTP client, so
downloads resume and verify like every other platform's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
from pydantic import SecretStr

from graph.records import BaseFamily, ExpertKind
from tools.platforms.errors import NotFoundError, PlatformError, PlatformHTTPError
from tools.platforms.http import HttpClient, HttpPolicy
from tools.platforms.records import PlatformFile, PlatformImage, PlatformModel, PlatformVersion

log = logging.getLogger(__name__)

# Hub repositories of each base family that adapters and fine-tunes declare as base_model.
BASE_REPOS: dict[BaseFamily, tuple[str, ...]] = {
    BaseFamily.SD15: (
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "runwayml/stable-diffusion-v1-5",
        "CompVis/stable-diffusion-v1-4",
    ),
    BaseFamily.SDXL: ("stabilityai/stable-diffusion-xl-base-1.0",),
    BaseFamily.FLUX1: ("black-forest-labs/FLUX.1-dev", "black-forest-labs/FLUX.1-schnell"),
}
_RELATION = {"lora": "adapter", "checkpoint": "finetune"}
_TYPE_LABEL = {"lora": "LORA", "checkpoint": "Checkpoint"}


class HuggingFaceClient:
    """Adapters and fine-tunes of a base family on the Hub (or any Hub-compatible endpoint).

    ``demo`` marks every record as demo data (for the demo platform's Hub endpoints).
    """

    def __init__(
        self,
        endpoint: str = "https://huggingface.co",
        token: SecretStr | None = None,
        policy: HttpPolicy | None = None,
        api: Any = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        demo: bool = False,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.demo = demo
        if api is None:
            from huggingface_hub import HfApi

            api = HfApi(endpoint=self.endpoint, token=token.get_secret_value() if token else False)
        self.api = api
        bearer = SecretStr(f"Bearer {token.get_secret_value()}") if token else None
        self.http = HttpClient(
            "huggingface",
            policy,
            secret_headers={"Authorization": bearer},
            transport=transport,
            sleep=sleep,
            home=self.endpoint,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> HuggingFaceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def file_url(self, repo_id: str, revision: str, filename: str) -> str:
        return f"{self.endpoint}/{repo_id}/resolve/{revision}/{filename}"

    def list_repos(
        self,
        base: BaseFamily = BaseFamily.SD15,
        types: Sequence[str] = ("lora", "checkpoint"),
        limit: int | None = None,
    ) -> Iterator[tuple[str, str]]:
        """``(repo_id, type)`` of adapters / fine-tunes of ``base``, each repo once."""
        seen: set[str] = set()
        for type_ in types:
            if type_ not in _RELATION:
                raise PlatformError(
                    f"unknown expert type {type_!r}: use one of {', '.join(_RELATION)}"
                )
            for repo in BASE_REPOS[base]:
                flt = f"base_model:{_RELATION[type_]}:{repo}"
                self.http.throttle()
                with _hub_errors(f"list models ({flt})"):
                    for info in self.api.list_models(filter=flt, limit=limit):
                        if info.id not in seen:
                            seen.add(info.id)
                            yield info.id, type_

    def model(self, repo_id: str, type_: str, base: BaseFamily) -> PlatformModel:
        """A repository as a one-version model (the version is the current commit)."""
        self.http.throttle()
        with _hub_errors(f"model {repo_id}"):
            info = self.api.model_info(repo_id, files_metadata=True)
        revision = info.sha or "main"
        card = self._model_card(repo_id, revision)
        card_data = info.card_data.to_dict() if info.card_data is not None else {}
        files = [
            PlatformFile(
                name=s.rfilename,
                size_bytes=s.lfs.size if s.lfs else s.size,
                sha256=s.lfs.sha256 if s.lfs else None,
                format="safetensors",
                role="Model",
                primary=False,
                download_url=self.file_url(repo_id, revision, s.rfilename),
            )
            for s in info.siblings or []
            if s.rfilename.endswith(".safetensors") and "/" not in s.rfilename
        ]
        if files:
            files[0] = files[0].model_copy(update={"primary": True})
        widgets = card_data.get("widget") or []
        images = [
            PlatformImage(prompt=w["text"])
            for w in widgets
            if isinstance(w, dict) and isinstance(w.get("text"), str)
        ]
        instance = card_data.get("instance_prompt")
        version = PlatformVersion(
            id=revision,
            name=revision[:12],
            base_model=str(card_data.get("base_model") or BASE_REPOS[base][0]),
            base=base,
            trained_words=[instance] if isinstance(instance, str) and instance.strip() else [],
            description=card,
            published_at=info.last_modified,
            files=files,
            images=images,
        )
        tags = [t for t in info.tags or [] if ":" not in t]
        return PlatformModel(
            platform="huggingface",
            id=repo_id,
            name=repo_id.split("/")[-1],
            type=_TYPE_LABEL[type_],
            kind=ExpertKind.PEFT if type_ == "lora" else ExpertKind.CKPT,
            description=card,
            tags=tags,
            creator=info.author or repo_id.split("/")[0],
            license={"license": card_data.get("license")},
            homepage_url=f"{self.endpoint}/{repo_id}",
            versions=[version],
            demo=self.demo,
        )

    def exists(self, repo_id: str) -> bool:
        """False when the repository is gone (deleted, renamed or made private)."""
        self.http.throttle()
        try:
            with _hub_errors(f"model {repo_id}"):
                self.api.model_info(repo_id)
        except NotFoundError:
            return False
        return True

    def _model_card(self, repo_id: str, revision: str) -> str | None:
        try:
            return _strip_front_matter(
                self.http.get_text(self.file_url(repo_id, revision, "README.md"))
            )
        except NotFoundError:
            return None


@contextmanager
def _hub_errors(what: str) -> Iterator[None]:
    """Turn ``huggingface_hub`` errors into PlatformErrors that name the fix."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError

    try:
        yield
    except RepositoryNotFoundError as exc:
        raise NotFoundError(f"huggingface: {what}: not found (404)", 404) from exc
    except OfflineModeIsEnabled as exc:
        raise PlatformError(
            f"huggingface: {what}: HF_HUB_OFFLINE is set; unset it to crawl the Hub"
        ) from exc
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        raise PlatformHTTPError(f"huggingface: {what}: {exc}", status) from exc


def _strip_front_matter(text: str) -> str:
    """A model card without its YAML metadata block."""
    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end != -1:
            return text[end + 4 :].lstrip("\n")
    return text
