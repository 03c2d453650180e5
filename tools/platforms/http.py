"""One HTTP client for every platform: request rate, retries with backoff, Retry-After.

Secrets travel only in request headers; log lines name the method and URL, never headers.
Redirects are followed here, hop by hop: a loop is a clear error, and a public platform may
not send DiffGraph to a private, loopback or link-local address (cloud metadata services).
Response bodies read whole (API JSON) have a size cap and a total deadline, so a server
that drips one byte at a time cannot hang a crawl.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from pydantic import BaseModel, Field, SecretStr

from tools.platforms.errors import (
    MalformedResponseError,
    NotFoundError,
    PlatformHTTPError,
    RedirectError,
)

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = "diffgraph/0.1 (+https://github.com/diffgraph)"


class HttpPolicy(BaseModel):
    """Rate, retries and timeouts of one platform client."""

    requests_per_s: float = Field(2.0, gt=0)
    max_retries: int = Field(5, ge=0)
    backoff_s: float = Field(1.0, ge=0, description="first backoff; doubled per retry")
    max_backoff_s: float = Field(60.0, ge=0)
    max_retry_after_s: float = Field(300.0, ge=0)
    timeout_s: float = Field(60.0, gt=0, description="connect / per-read timeout")
    max_redirects: int = Field(10, ge=0)
    max_body_s: float = Field(120.0, gt=0, description="whole body of a non-streamed response")
    max_body_bytes: int = Field(64 * 2**20, gt=0, description="largest non-streamed response")


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


class RateLimiter:
    """Spaces request starts at least ``1 / rate`` seconds apart (thread-safe)."""

    def __init__(
        self,
        rate_per_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate_per_s
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            self._sleep(delay)


class HttpClient:
    """A rate-limited ``httpx.Client`` that retries 429/5xx and broken connections.

    ``home``: the platform's base URL. Requests and redirects to other hosts must not
    resolve to private, loopback or link-local addresses unless ``home`` itself does (a
    local platform); without ``home`` the first URL of each request plays its part.
    """

    def __init__(
        self,
        name: str,
        policy: HttpPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        secret_headers: Mapping[str, SecretStr | None] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        home: str | None = None,
    ) -> None:
        self.name = name
        self.policy = policy or HttpPolicy()
        self._home = httpx.URL(home) if home else None
        self._local: dict[str, bool] = {}
        self._sleep = sleep
        self._limiter = RateLimiter(self.policy.requests_per_s, sleep=sleep)
        all_headers = {"User-Agent": USER_AGENT, **(headers or {})}
        for key, secret in (secret_headers or {}).items():
            if secret is not None and secret.get_secret_value():
                all_headers[key] = secret.get_secret_value()
        self._client = httpx.Client(
            headers=all_headers,
            timeout=self.policy.timeout_s,
            follow_redirects=False,  # followed hop by hop in ``_follow``
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:  # never show headers (they may hold an API key)
        return f"HttpClient({self.name!r})"

    def throttle(self) -> None:
        """Wait for this client's next request slot (for calls made by other libraries)."""
        self._limiter.wait()

    def send(
        self,
        method: str,
        url: str,
        *,
        params: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """The first non-retryable response; 404 raises NotFoundError, other 4xx/5xx raise.

        With ``stream`` the body is not read: the caller must close the response.
        """
        attempt = 0
        while True:
            request = self._client.build_request(method, url, params=params, headers=headers)
            try:
                response = self._follow(request)
            except httpx.TransportError as exc:
                if attempt >= self.policy.max_retries:
                    raise PlatformHTTPError(
                        f"{self.name}: {method} {_show(request.url)} failed after "
                        f"{attempt + 1} attempts: {type(exc).__name__}: {exc}; check the "
                        "network or the platform URL"
                    ) from exc
                self._pause(attempt, None, f"{type(exc).__name__}", request.url)
                attempt += 1
                continue
            if response.status_code in RETRYABLE_STATUS and attempt < self.policy.max_retries:
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                response.close()
                self._pause(attempt, wait, f"HTTP {response.status_code}", request.url)
                attempt += 1
                continue
            if response.is_success:
                return response if stream else self._read_whole(response)
            response.close()
            raise _status_error(self.name, method, request.url, response)

    def _follow(self, request: httpx.Request) -> httpx.Response:
        """The streamed response at the end of ``request``'s redirects (each hop checked)."""
        first = request.url
        for _ in range(self.policy.max_redirects + 1):
            self._check_target(request.url, first)
            self._limiter.wait()
            response = self._client.send(request, stream=True)
            if response.next_request is None:
                return response
            request = response.next_request  # httpx drops credentials across origins
            response.close()
        raise RedirectError(
            f"{self.name}: {_show(first)} redirected more than {self.policy.max_redirects} "
            f"times (last to {_show(request.url)}): a redirect loop; the platform serves no "
            "file there - report it to the platform or skip this item"
        )

    def _check_target(self, url: httpx.URL, first: httpx.URL) -> None:
        if url.scheme not in ("http", "https"):
            raise RedirectError(
                f"{self.name}: {_show(first)} points to {_show(url)}: only http(s) URLs are "
                "followed"
            )
        home = self._home or first
        if url.host == home.host or self._is_local(home.host):
            return
        private = [a for a in _addresses(url.host) if not a.is_global]
        if private:
            raise RedirectError(
                f"{self.name}: refusing {_show(url)} (reached from {_show(first)}): it "
                f"resolves to {private[0]}, a private, loopback or link-local address, and "
                f"the platform {home.host} is public; a platform may not point DiffGraph at "
                "local services. Crawl a local platform by its local URL instead"
            )

    def _is_local(self, host: str) -> bool:
        if host not in self._local:
            self._local[host] = any(not a.is_global for a in _addresses(host))
        return self._local[host]

    def _read_whole(self, response: httpx.Response) -> httpx.Response:
        """The (decoded) body read under the size cap and total deadline, as a plain response."""
        deadline = time.monotonic() + self.policy.max_body_s
        body = bytearray()
        try:
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > self.policy.max_body_bytes:
                    raise PlatformHTTPError(
                        f"{self.name}: {_show(response.url)} sent more than "
                        f"{self.policy.max_body_bytes / 2**20:.0f} MiB; expected a small "
                        "API response"
                    )
                if time.monotonic() > deadline:
                    raise PlatformHTTPError(
                        f"{self.name}: {_show(response.url)} took more than "
                        f"{self.policy.max_body_s:.0f} s to send {len(body)} bytes; the "
                        "platform is too slow or stalling - try again later"
                    )
        finally:
            response.close()
        headers = httpx.Headers(response.headers)
        for name in ("content-encoding", "content-length", "transfer-encoding"):
            headers.pop(name, None)  # the body is decoded already
        return httpx.Response(
            response.status_code, headers=headers, content=bytes(body), request=response.request
        )

    def get_json(self, url: str, params: Any = None) -> Any:
        response = self.send("GET", url, params=params)
        try:
            return response.json()
        except ValueError as exc:
            raise MalformedResponseError(
                f"{self.name}: GET {_show(response.url)} returned "
                f"{response.headers.get('content-type', 'no content type')}, expected JSON: "
                f"{response.text[:120]!r}; check the platform URL"
            ) from exc

    def get_text(self, url: str, params: Any = None) -> str:
        return self.send("GET", url, params=params).text

    def _pause(self, attempt: int, retry_after: float | None, why: str, url: httpx.URL) -> None:
        if retry_after is not None and retry_after > self.policy.max_retry_after_s:
            raise PlatformHTTPError(
                f"{self.name}: {_show(url)} asks to wait {retry_after:.0f} s ({why}), longer "
                f"than max_retry_after_s={self.policy.max_retry_after_s:.0f}: try again later "
                "or raise DIFFGRAPH_PLATFORMS__MAX_RETRY_AFTER_S",
                status=429,
            )
        wait = (
            retry_after
            if retry_after is not None
            else min(self.policy.max_backoff_s, self.policy.backoff_s * 2**attempt)
        )
        log.info("%s: %s on %s, retrying in %.1f s", self.name, why, _show(url), wait)
        if wait > 0:
            self._sleep(wait)


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses ``host`` resolves to (none when it does not resolve)."""
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return []
    out = []
    for text in found:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        mapped = getattr(address, "ipv4_mapped", None)
        out.append(mapped or address)
    return sorted(out, key=str)


def _show(url: httpx.URL) -> str:
    """The URL without query values that could be secrets."""
    return str(url.copy_with(query=None)) if url.query else str(url)


def _status_error(name: str, method: str, url: httpx.URL, response: httpx.Response):
    status = response.status_code
    where = f"{name}: {method} {_show(url)}"
    if status == 404:
        return NotFoundError(f"{where}: not found (404); it may have been removed", status)
    if status in (401, 403):
        return PlatformHTTPError(
            f"{where}: HTTP {status} (not authorised); set the API key "
            "(CIVITAI_API_KEY / HF_TOKEN) if the platform requires one",
            status,
        )
    return PlatformHTTPError(f"{where}: HTTP {status}: {response.text[:200]!r}", status)
