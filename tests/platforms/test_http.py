"""Rate limiting, retries and secrets of the shared platform HTTP client."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import httpx
import pytest
from pydantic import SecretStr

from tools.platforms.civitai import CivitaiClient
from tools.platforms.errors import NotFoundError, PlatformHTTPError
from tools.platforms.http import HttpClient, HttpPolicy, RateLimiter, retry_after_seconds

KEY = "sk-civitai-secret-0123456789"


class Script:
    """A MockTransport handler answering with scripted responses in order."""

    def __init__(self, *responses: httpx.Response | Exception) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


def client(script: Script, **policy) -> tuple[HttpClient, list[float]]:
    sleeps: list[float] = []
    http = HttpClient(
        "test",
        HttpPolicy(requests_per_s=1000, backoff_s=1.0, **policy),
        transport=httpx.MockTransport(script),
        sleep=sleeps.append,
    )
    return http, sleeps


def test_retry_after_seconds_and_http_date():
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds("Wed, 01 May 2024 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Wed, 01 May 2024 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_429_honours_retry_after():
    script = Script(
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(429, headers={"Retry-After": "3"}),
        httpx.Response(200, json={"ok": True}),
    )
    http, sleeps = client(script)
    assert http.get_json("https://example.test/api") == {"ok": True}
    assert [s for s in sleeps if s >= 1] == [7.0, 3.0]
    assert len(script.requests) == 3


def test_5xx_and_broken_connections_back_off_exponentially():
    script = Script(
        httpx.Response(503),
        httpx.ConnectError("refused"),
        httpx.Response(502),
        httpx.Response(200, json=[1]),
    )
    http, sleeps = client(script)
    assert http.get_json("https://example.test/api") == [1]
    assert [s for s in sleeps if s >= 1] == [1.0, 2.0, 4.0]


def test_retries_run_out_with_a_clear_error():
    script = Script(*[httpx.Response(500, text="oops")] * 3)
    http, _ = client(script, max_retries=2)
    with pytest.raises(PlatformHTTPError, match="HTTP 500") as info:
        http.get_json("https://example.test/api")
    assert info.value.status == 500


def test_a_retry_after_beyond_the_limit_fails_at_once():
    script = Script(httpx.Response(429, headers={"Retry-After": "3600"}))
    http, sleeps = client(script, max_retry_after_s=60)
    with pytest.raises(PlatformHTTPError, match="asks to wait 3600 s"):
        http.get_json("https://example.test/api")
    assert not [s for s in sleeps if s >= 1]


def test_404_is_not_retried():
    script = Script(httpx.Response(404))
    http, _ = client(script)
    with pytest.raises(NotFoundError, match="not found"):
        http.get_json("https://example.test/api/v1/models/1")
    assert len(script.requests) == 1


def test_non_json_body_names_the_problem():
    script = Script(
        httpx.Response(200, text="<html>login</html>", headers={"content-type": "text/html"})
    )
    http, _ = client(script)
    with pytest.raises(Exception, match="expected JSON"):
        http.get_json("https://example.test/api")


def test_rate_limiter_spaces_requests():
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        limiter.wait()
    assert sleeps == [0.25, 0.25, 0.25]


def test_api_key_is_a_header_and_never_logged(caplog):
    caplog.set_level(logging.DEBUG)
    script = Script(
        httpx.Response(429, headers={"Retry-After": "0"}),
        httpx.Response(200, json={"items": [], "metadata": {}}),
    )
    civitai = CivitaiClient(
        "https://civitai.test",
        api_key=SecretStr(KEY),
        policy=HttpPolicy(requests_per_s=1000),
        transport=httpx.MockTransport(script),
        sleep=lambda s: None,
    )
    page = civitai.models_page(types=("lora",), limit=5)
    assert page.models == [] and page.next_cursor is None
    request = script.requests[-1]
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert KEY not in str(request.url)
    assert KEY not in caplog.text and KEY not in repr(civitai.http)
    params = request.url.params
    assert params.get_list("types") == ["LORA", "LoCon", "DoRA"]
    assert "SD 1.5" in params.get_list("baseModels")
    assert (params["limit"], params["sort"], params["nsfw"]) == ("5", "Highest Rated", "false")


def test_without_a_key_no_authorization_header_is_sent():
    script = Script(httpx.Response(200, json={"items": [], "metadata": {}}))
    civitai = CivitaiClient(
        "https://civitai.test", transport=httpx.MockTransport(script), sleep=lambda s: None
    )
    civitai.models_page()
    assert "Authorization" not in script.requests[0].headers
