"""Civitai REST API client (also speaks to the local demo platform, which implements it)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence

import httpx
from pydantic import SecretStr

from graph.records import BaseFamily
from tools.platforms.civitai_schema import (
    BASE_MODELS,
    MODEL_TYPES,
    parse_model,
    parse_models_page,
    parse_version_response,
)
from tools.platforms.errors import MalformedResponseError, PlatformError
from tools.platforms.http import HttpClient, HttpPolicy
from tools.platforms.records import ModelPage, PlatformModel, PlatformName

log = logging.getLogger(__name__)

SORTS = ("Highest Rated", "Most Downloaded", "Newest")


class CivitaiClient:
    """``/api/v1/models`` (cursor pagination), ``/model-versions``, by-hash lookups.

    The API key is sent as ``Authorization: Bearer ...`` and never logged.
    """

    def __init__(
        self,
        base_url: str = "https://civitai.com",
        api_key: SecretStr | None = None,
        policy: HttpPolicy | None = None,
        platform: PlatformName = "civitai",
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.platform: PlatformName = platform
        bearer = SecretStr(f"Bearer {api_key.get_secret_value()}") if api_key else None
        self.http = HttpClient(
            platform,
            policy,
            headers={"Accept": "application/json"},
            secret_headers={"Authorization": bearer},
            transport=transport,
            sleep=sleep,
            home=self.base_url,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> CivitaiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _api(self, path: str) -> str:
        return f"{self.base_url}/api/v1/{path.lstrip('/')}"

    def homepage_url(self, model_id: str) -> str:
        return f"{self.base_url}/models/{model_id}"

    def models_page(
        self,
        types: Sequence[str] = ("lora", "checkpoint"),
        base: BaseFamily | None = BaseFamily.SD15,
        sort: str = "Highest Rated",
        nsfw: bool = False,
        limit: int = 100,
        cursor: str | None = None,
        query: str | None = None,
    ) -> ModelPage:
        """One page of ``GET /api/v1/models``; ``types`` are 'lora' / 'checkpoint'."""
        if sort not in SORTS:
            raise PlatformError(f"unknown Civitai sort {sort!r}: use one of {', '.join(SORTS)}")
        params: list[tuple[str, str | int]] = [("limit", max(1, min(100, limit))), ("sort", sort)]
        for t in types:
            if t not in MODEL_TYPES:
                raise PlatformError(
                    f"unknown expert type {t!r}: use one of {', '.join(MODEL_TYPES)}"
                )
            params += [("types", label) for label in MODEL_TYPES[t]]
        if base is not None:
            params += [("baseModels", label) for label in BASE_MODELS[base]]
        params.append(("nsfw", "true" if nsfw else "false"))
        if cursor:
            params.append(("cursor", cursor))
        if query:
            params.append(("query", query))
        data = self.http.get_json(self._api("models"), params=params)
        return parse_models_page(data, self.platform, self.base_url)

    def iter_pages(self, max_pages: int | None = None, **filters) -> Iterator[ModelPage]:
        """Pages of the listing, following ``metadata.nextCursor`` until it runs out."""
        cursor, seen = None, set()
        pages = 0
        while max_pages is None or pages < max_pages:
            page = self.models_page(cursor=cursor, **filters)
            pages += 1
            yield page
            cursor = page.next_cursor
            if not cursor:
                return
            if cursor in seen:
                raise MalformedResponseError(
                    f"{self.platform} listing repeats cursor {cursor!r}: the platform "
                    "paginates in a loop; report it or lower --max-experts"
                )
            seen.add(cursor)

    def model(self, model_id: str) -> PlatformModel:
        """``GET /api/v1/models/{id}``; NotFoundError when it was removed."""
        data = self.http.get_json(self._api(f"models/{model_id}"))
        try:
            model, skipped = parse_model(data, self.platform, self.base_url)
        except ValueError as exc:
            raise MalformedResponseError(
                f"{self.platform} model {model_id}: unexpected response ({exc})"
            ) from exc
        for s in skipped:
            log.warning("skipped %s: %s", s.item, s.reason)
        return model

    def model_version(self, version_id: str) -> PlatformModel:
        """``GET /api/v1/model-versions/{id}`` as a model holding that one version."""
        data = self.http.get_json(self._api(f"model-versions/{version_id}"))
        return parse_version_response(data, self.platform, self.base_url)

    def version_by_hash(self, sha256: str) -> PlatformModel:
        """``GET /api/v1/model-versions/by-hash/{hash}``; NotFoundError when unknown."""
        data = self.http.get_json(self._api(f"model-versions/by-hash/{sha256.upper()}"))
        return parse_version_response(data, self.platform, self.base_url)
