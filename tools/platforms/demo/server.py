"""The local demo platform: a Civitai-compatible API (and a Hugging Face Hub subset) on 127.0.0.1.

DEMO DATA. It serves the demo catalogue with the subset of the Civitai REST API that
DiffGraph uses (``/api/v1/models`` with cursor pagination, ``/api/v1/models/{id}``,
``/api/v1/model-versions/{id}``, ``/api/v1/model-versions/by-hash/{hash}``,
``/api/download/models/{versionId}`` with HTTP Range), homepages whose skill text is
inserted by JavaScript (``/models/{id}``), and the Hub endpoints ``huggingface_hub`` calls
(``/hf/api/models``, ``/hf/api/models/{repo}``, ``/hf/{repo}/resolve/{rev}/{file}``).

Faults for tests: every ``throttle_every``-th Civitai API request answers 429 with ``Retry-After``;
the ``flaky-download`` model's file breaks midway on its first ``flaky_breaks`` full
downloads; the ``bad-hash`` model publishes a SHA-256 its file does not have; the
``injection`` model's homepage carries a prompt-injection text. ``hostile`` (version id ->
behaviour) makes a download hostile: ``redirect-loop`` (redirects to itself) or
``login-page`` (no SHA-256 published, an HTML login page served as the file).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import logging
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tools.local_server import LocalServer
from tools.platforms.demo.catalogue import (
    DemoCatalogue,
    DemoModel,
    DemoVersion,
    demo_catalogue,
)
from tools.platforms.demo.weights import DemoWeights, weight_name

log = logging.getLogger(__name__)

BASE_MODEL_LABEL = "SD 1.5"
HF_BASE_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"
CREATOR = "diffgraph-demo"
_SORT_KEYS = {
    "Highest Rated": lambda m: (-m.rating, m.id),
    "Most Downloaded": lambda m: (-m.downloads, m.id),
    "Newest": lambda m: (-m.latest.published.timestamp(), m.id),
}


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    range: str | None
    authorized: bool
    status: int


class DemoPlatform(LocalServer):
    """The demo platform on a background thread; a context manager.

    ``weights``: the demo weight files, or the cache folder to generate them in.

    ``api_key``: when set, downloads need ``Authorization: Bearer <api_key>`` (401 otherwise).
    """

    thread_name = "demo-platform"

    def __init__(
        self,
        weights: DemoWeights | Path,
        catalogue: DemoCatalogue | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        throttle_every: int | None = 5,
        retry_after_s: int = 1,
        flaky_breaks: int = 1,
        hostile: dict[int, str] | None = None,
    ) -> None:
        self.catalogue = catalogue or demo_catalogue()
        self.hostile = dict(hostile or {})
        self.weights = weights if isinstance(weights, DemoWeights) else DemoWeights(weights)
        super().__init__(host, port)
        self.api_key = api_key
        self.throttle_every = throttle_every
        self.retry_after_s = retry_after_s
        self.requests: list[LoggedRequest] = []
        self._breaks_left: dict[int, int] = {}
        self._flaky_breaks = flaky_breaks
        self._api_count = 0
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_Handler,), {"platform": self})

    def start(self) -> DemoPlatform:
        super().start()
        log.info("demo platform (DEMO DATA) serving on %s", self.url)
        return self

    @property
    def url(self) -> str:
        return self.address

    @property
    def hf_url(self) -> str:
        return f"{self.url}/hf"

    def prepare(self) -> None:
        """Generate every weight file now (else each is made on its first request)."""
        for model in self.catalogue.models():
            for version in model.versions:
                self.weights.info(model, version)

    # -- state used by the handler -----------------------------------------------------

    def _log(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.requests.append(entry)

    def _throttled(self) -> bool:
        with self._lock:
            self._api_count += 1
            return bool(self.throttle_every) and self._api_count % self.throttle_every == 0

    def _should_break(self, version_id: int) -> bool:
        with self._lock:
            left = self._breaks_left.setdefault(version_id, self._flaky_breaks)
            if left > 0:
                self._breaks_left[version_id] = left - 1
                return True
            return False

    def published_sha256(self, model: DemoModel, version: DemoVersion) -> str:
        real = self.weights.info(model, version).sha256
        if model.fault == "bad-hash":
            return hashlib.sha256(f"not the file of {version.id}".encode()).hexdigest()
        return real

    # -- Civitai JSON ------------------------------------------------------------------

    def version_json(self, model: DemoModel, version: DemoVersion, with_model: bool) -> dict:
        info = self.weights.info(model, version)
        sha = self.published_sha256(model, version)
        download = f"{self.url}/api/download/models/{version.id}"
        data: dict[str, Any] = {
            "id": version.id,
            "modelId": model.id,
            "name": version.name,
            "baseModel": BASE_MODEL_LABEL,
            "baseModelType": "Standard",
            "description": f"<p>{html.escape(model.name)} {version.name}. {model.notice}</p>",
            "publishedAt": version.published.isoformat().replace("+00:00", "Z"),
            "availability": "Public",
            "trainedWords": model.trigger_words,
            "stats": {"downloadCount": model.downloads, "rating": model.rating},
            "files": [
                {
                    "id": version.id,
                    "name": weight_name(model, version),
                    "sizeKB": info.size_bytes / 1024,
                    "type": "Model",
                    "metadata": {"format": "SafeTensor", "fp": "fp32", "size": "full"},
                    "pickleScanResult": "Success",
                    "virusScanResult": "Success",
                    "hashes": {}
                    if self.hostile.get(version.id) == "login-page"
                    else {"SHA256": sha.upper(), "AutoV2": sha[:10].upper()},
                    "downloadUrl": download,
                    "primary": True,
                }
            ],
            "images": [
                {
                    "id": version.id * 10 + i,
                    "url": f"{self.url}/images/{version.id}-{i}.png",
                    "nsfwLevel": 1,
                    "width": 512,
                    "height": 512,
                    "type": "image",
                    "meta": {"prompt": prompt, "negativePrompt": "lowres, blurry"},
                }
                for i, prompt in enumerate(model.example_prompts)
            ],
            "downloadUrl": download,
        }
        if with_model:
            data["model"] = {"name": model.name, "type": model.type, "nsfw": False, "poi": False}
        return data

    def model_json(self, model: DemoModel) -> dict:
        return {
            "id": model.id,
            "name": model.name,
            "description": model.description_html,
            "type": model.type,
            "poi": False,
            "nsfw": False,
            "allowNoCredit": True,
            "allowCommercialUse": ["Image"],
            "allowDerivatives": True,
            "allowDifferentLicense": True,
            "stats": {"downloadCount": model.downloads, "rating": model.rating},
            "creator": {"username": CREATOR},
            "tags": model.tags,
            "modelVersions": [self.version_json(model, v, False) for v in model.versions],
        }

    def listing(self, query: dict[str, list[str]]) -> dict:
        types = set(query.get("types", []))
        bases = set(query.get("baseModels", []))
        name = (query.get("query") or [""])[0].lower()
        sort = (query.get("sort") or ["Highest Rated"])[0]
        limit = max(1, min(100, int((query.get("limit") or ["20"])[0])))
        offset = _cursor_offset((query.get("cursor") or [""])[0])
        models = [
            m
            for m in self.catalogue.models()
            if (not types or m.type in types)
            and (not bases or BASE_MODEL_LABEL in bases)
            and name in m.name.lower()
        ]
        models.sort(key=_SORT_KEYS.get(sort, _SORT_KEYS["Highest Rated"]))
        page = models[offset : offset + limit]
        more = offset + limit < len(models)
        cursor = _make_cursor(offset + limit) if more else None
        return {
            "items": [self.model_json(m) for m in page],
            "metadata": {
                "nextCursor": cursor,
                "nextPage": f"{self.url}/api/v1/models?limit={limit}&cursor={cursor}"
                if more
                else None,
                "pageSize": limit,
            },
        }

    def find_version_by_hash(self, digest: str) -> tuple[DemoModel, DemoVersion] | None:
        digest = digest.lower()
        for model in self.catalogue.models():
            for version in model.versions:
                sha = self.published_sha256(model, version)
                if digest in (sha, sha[:10]):
                    return model, version
        return None

    # -- Hugging Face JSON -------------------------------------------------------------

    def hf_model(self, repo: str) -> DemoModel | None:
        return next((m for m in self.catalogue.models() if m.hf_repo == repo), None)

    def hf_sha(self, version: DemoVersion) -> str:
        return hashlib.sha1(f"demo-revision-{version.id}".encode()).hexdigest()

    def hf_info(self, model: DemoModel, blobs: bool) -> dict:
        version = model.latest
        info = self.weights.info(model, version)
        weights: dict[str, Any] = {"rfilename": weight_name(model, version)}
        if blobs:
            weights |= {
                "size": info.size_bytes,
                "blobId": info.sha256[:40],
                "lfs": {
                    "size": info.size_bytes,
                    "sha256": self.published_sha256(model, version),
                    "pointerSize": 134,
                },
            }
        relation = "finetune" if model.type == "Checkpoint" else "adapter"
        return {
            "id": model.hf_repo,
            "modelId": model.hf_repo,
            "author": CREATOR,
            "sha": self.hf_sha(version),
            "lastModified": version.published.isoformat().replace("+00:00", "Z"),
            "private": False,
            "tags": [*model.tags, f"base_model:{relation}:{HF_BASE_REPO}", "diffusers"],
            "cardData": self.hf_card_data(model),
            "siblings": [{"rfilename": "README.md"}, weights],
        }

    def hf_card_data(self, model: DemoModel) -> dict:
        data: dict[str, Any] = {
            "license": "other",
            "base_model": HF_BASE_REPO,
            "tags": model.tags,
            "widget": [{"text": p} for p in model.example_prompts],
        }
        if model.trigger_words:
            data["instance_prompt"] = model.trigger_words[0]
        return data

    def hf_readme(self, model: DemoModel) -> str:
        front = json.dumps(self.hf_card_data(model))  # JSON is valid YAML
        return f"---\n{front}\n---\n# {model.name}\n\n{model.summary}\n\n{model.notice}\n"

    def homepage(self, model: DemoModel) -> str:
        encoded = base64.b64encode(model.homepage_text.encode()).decode()
        return _HOMEPAGE.format(
            name=html.escape(model.name), notice=html.escape(model.notice), text=encoded
        )


_HOMEPAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{name} - DiffGraph demo platform</title></head>
<body>
<header>DiffGraph demo platform - {notice}</header>
<main><h1>{name}</h1><section id="about">Loading the model description...</section></main>
<script>
document.addEventListener("DOMContentLoaded", () => setTimeout(() => {{
  const bytes = Uint8Array.from(atob("{text}"), c => c.charCodeAt(0));
  document.getElementById("about").textContent = new TextDecoder().decode(bytes);
}}, 30));
</script>
</body></html>
"""


def _make_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"demo|{offset}".encode()).decode()


def _cursor_offset(cursor: str) -> int:
    if not cursor:
        return 0
    try:
        tag, offset = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        if tag != "demo":
            raise ValueError(tag)
        return max(0, int(offset))
    except ValueError:
        return 0


_ROUTES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^/api/v1/models/?$"), "models"),
    (re.compile(r"^/api/v1/models/(\d+)$"), "model"),
    (re.compile(r"^/api/v1/model-versions/by-hash/([0-9A-Fa-f]+)$"), "by_hash"),
    (re.compile(r"^/api/v1/model-versions/(\d+)$"), "version"),
    (re.compile(r"^/api/download/models/(\d+)$"), "download"),
    (re.compile(r"^/models/(\d+)(?:/[^/]*)?$"), "homepage"),
    (re.compile(r"^/hf/api/models/?$"), "hf_models"),
    (re.compile(r"^/hf/api/models/([^/]+/[^/]+?)(?:/revision/[^/]+)?$"), "hf_info"),
    (re.compile(r"^/hf/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$"), "hf_file"),
    (re.compile(r"^/hf/([^/]+/[^/]+)$"), "hf_homepage"),
]
_THROTTLED = frozenset({"models", "model", "by_hash", "version"})  # the Civitai API routes


class _Handler(BaseHTTPRequestHandler):
    platform: DemoPlatform
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        for pattern, name in _ROUTES:
            match = pattern.match(parts.path)
            if match:
                if name in _THROTTLED and self.platform._throttled():
                    retry = {"Retry-After": str(self.platform.retry_after_s)}
                    self._json(429, {"error": "Too Many Requests"}, retry)
                    return
                getattr(self, f"_{name}")(*match.groups(), query=query)
                return
        self._json(404, {"error": f"no route {parts.path}"})

    # -- Civitai -------------------------------------------------------------------------

    def _models(self, query) -> None:
        self._json(200, self.platform.listing(query))

    def _model(self, model_id: str, query) -> None:
        model = self.platform.catalogue.model(int(model_id))
        if model is None:
            self._json(404, {"error": f"No model with id {model_id}"})
        else:
            self._json(200, self.platform.model_json(model))

    def _version(self, version_id: str, query) -> None:
        found = self.platform.catalogue.version(int(version_id))
        if found is None:
            self._json(404, {"error": f"No model version with id {version_id}"})
        else:
            self._json(200, self.platform.version_json(*found, with_model=True))

    def _by_hash(self, digest: str, query) -> None:
        found = self.platform.find_version_by_hash(digest)
        if found is None:
            self._json(404, {"error": "Model not found"})
        else:
            self._json(200, self.platform.version_json(*found, with_model=True))

    def _download(self, version_id: str, query) -> None:
        if self.platform.api_key and not self._authorized():
            self._json(401, {"error": "Unauthorized: an API key is required"})
            return
        found = self.platform.catalogue.version(int(version_id))
        if found is None:
            self._json(404, {"error": f"No model version with id {version_id}"})
            return
        model, version = found
        hostile = self.platform.hostile.get(version.id)
        if hostile == "redirect-loop":
            self._send(302, b"", "text/plain", {"Location": self.path})
            return
        if hostile == "login-page":
            page = b"<!DOCTYPE html><html><body><form>Log in to download</form></body></html>"
            self._send(200, page, "text/html")
            return
        data = self.platform.weights.info(model, version).path.read_bytes()
        flaky = model.fault == "flaky-download"
        self._file(data, weight_name(model, version), version.id if flaky else None)

    def _homepage(self, model_id: str, query) -> None:
        model = self.platform.catalogue.model(int(model_id))
        if model is None:
            self._send(404, b"<h1>Not found</h1>", "text/html")
        else:
            self._send(200, self.platform.homepage(model).encode(), "text/html; charset=utf-8")

    # -- Hugging Face --------------------------------------------------------------------

    def _hf_models(self, query) -> None:
        filters = query.get("filter", [])
        limit = int((query.get("limit") or ["1000"])[0])
        items = []
        for model in self.platform.catalogue.models():
            relation = "finetune" if model.type == "Checkpoint" else "adapter"
            if all(f == f"base_model:{relation}:{HF_BASE_REPO}" for f in filters):
                info = self.platform.hf_info(model, blobs=False)
                items.append({k: info[k] for k in ("id", "sha", "tags", "lastModified")})
        self._json(200, items[:limit])

    def _hf_info(self, repo: str, query) -> None:
        model = self.platform.hf_model(repo)
        if model is None:
            self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        else:
            self._json(200, self.platform.hf_info(model, blobs="blobs" in query))

    def _hf_file(self, repo: str, revision: str, filename: str, query) -> None:
        model = self.platform.hf_model(repo)
        if model is None:
            self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return
        version = model.latest
        if filename == "README.md":
            self._send(200, self.platform.hf_readme(model).encode(), "text/markdown")
        elif filename == weight_name(model, version):
            data = self.platform.weights.info(model, version).path.read_bytes()
            flaky = model.fault == "flaky-download"
            self._file(data, filename, version.id if flaky else None)
        else:
            self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})

    def _hf_homepage(self, repo: str, query) -> None:
        model = self.platform.hf_model(repo)
        if model is None:
            self._send(404, b"<h1>Not found</h1>", "text/html")
        else:
            self._send(200, self.platform.homepage(model).encode(), "text/html; charset=utf-8")

    # -- responses -----------------------------------------------------------------------

    def _authorized(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.platform.api_key}"

    def _file(self, data: bytes, name: str, flaky_id: int | None) -> None:
        size = len(data)
        start = _range_start(self.headers.get("Range"))
        headers = {
            "Accept-Ranges": "bytes",
            "Content-Disposition": f'attachment; filename="{name}"',
        }
        if start is None or start == 0:
            if flaky_id is not None and self.platform._should_break(flaky_id):
                self._send_broken(data, headers)
                return
            self._send(200, data, "application/octet-stream", headers)
        elif start >= size:
            self._send(416, b"", "application/octet-stream", {"Content-Range": f"bytes */{size}"})
        else:
            headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
            self._send(206, data[start:], "application/octet-stream", headers)

    def _send_broken(self, data: bytes, headers: dict[str, str]) -> None:
        """Announce the whole file, send half of it, then drop the connection."""
        self._record(200)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self._record(status)  # before the reply, so a client that got it finds it logged
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _record(self, status: int) -> None:
        self.platform._log(
            LoggedRequest(
                method=self.command,
                path=self.path,
                range=self.headers.get("Range"),
                authorized=self.platform.api_key is not None and self._authorized(),
                status=status,
            )
        )


def _range_start(value: str | None) -> int | None:
    match = re.match(r"^bytes=(\d+)-(\d*)$", (value or "").strip())
    return int(match.group(1)) if match else None
