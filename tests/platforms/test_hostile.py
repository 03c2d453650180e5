"""A hostile platform: redirect loops, private redirect targets, slow drips, no hash, wrong
sizes and HTML instead of weights. Each is a clear error; nothing is kept as a weight file."""

from __future__ import annotations

import itertools

import httpx
import pytest

from tests.platforms.conftest import safetensors_blob
from tools.platforms.downloads import DownloadPolicy, download
from tools.platforms.errors import (
    DownloadError,
    NotWeightsError,
    PlatformHTTPError,
    RedirectError,
    SlowDownloadError,
    TimeBudgetError,
)
from tools.platforms.http import HttpClient, HttpPolicy

HOME = "https://platform.example"
WEIGHTS = safetensors_blob(bytes(range(256)) * 40)


def client(handler, home: str | None = HOME, **policy) -> tuple[HttpClient, list]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    http = HttpClient(
        "hostile",
        HttpPolicy(requests_per_s=1000, backoff_s=0.0, **policy),
        transport=httpx.MockTransport(record),
        sleep=lambda s: None,
        home=home,
    )
    return http, seen


def ok(body: bytes) -> httpx.Response:
    """A 200 whose body streams (as over a socket)."""
    return httpx.Response(200, stream=httpx.ByteStream(body))


def files_in(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_redirect_loop_is_one_clear_error_without_retries(tmp_path):
    http, seen = client(lambda r: httpx.Response(302, headers={"Location": str(r.url)}))
    with pytest.raises(DownloadError, match="redirect loop") as info:
        download(http, f"{HOME}/dl/1", tmp_path, "a.safetensors", None)
    assert isinstance(info.value.__cause__, RedirectError)
    assert len(seen) == 11  # the first request and 10 redirects, not resumed 5 times
    assert files_in(tmp_path) == []


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:8080/admin",
        "http://10.0.0.7/x.safetensors",
        "http://[::1]/x",
        "http://[fe80::1]/x",
    ],
)
def test_a_public_platform_may_not_redirect_to_private_addresses(tmp_path, target):
    def handler(request):
        if request.url.host == "platform.example":
            return httpx.Response(302, headers={"Location": target})
        return ok(WEIGHTS)

    http, seen = client(handler)
    with pytest.raises(DownloadError, match="private, loopback or link-local") as info:
        download(http, f"{HOME}/dl/1", tmp_path, "a.safetensors", None)
    assert isinstance(info.value.__cause__, RedirectError)
    assert [r.url.host for r in seen] == ["platform.example"]  # never contacted
    assert files_in(tmp_path) == []


def test_non_http_redirects_are_refused(tmp_path):
    http, _ = client(lambda r: httpx.Response(302, headers={"Location": "file:///etc/passwd"}))
    with pytest.raises(DownloadError, match=r"only http\(s\) URLs"):
        download(http, f"{HOME}/dl/1", tmp_path, "a.safetensors", None)


def test_public_cdn_redirects_and_local_platforms_are_followed(tmp_path):
    def handler(request):
        if request.url.path == "/dl/1":
            return httpx.Response(302, headers={"Location": "https://cdn.example/blob"})
        if request.url.path == "/dl/2":
            return httpx.Response(302, headers={"Location": "http://127.0.0.1:9999/blob"})
        return ok(WEIGHTS)

    http, _ = client(handler)
    got = download(http, f"{HOME}/dl/1", tmp_path / "a", "a.safetensors", None)
    assert got.size_bytes == len(WEIGHTS) and not got.verified
    local, _ = client(handler, home="http://127.0.0.1:8000")  # a local platform
    assert download(local, "http://127.0.0.1:8000/dl/2", tmp_path / "b", "b.safetensors", None)


class Clock:
    """A fake monotonic clock that advances ``step`` seconds per reading."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 1000.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def drip(request: httpx.Request) -> httpx.Response:
    """One byte per chunk, forever (as a server sending a byte every 2 s would)."""
    return httpx.Response(200, stream=_Drip())


class _Drip(httpx.SyncByteStream):
    def __iter__(self):
        for _ in itertools.count():
            yield b"x"


def test_a_slow_drip_is_stopped_by_the_minimum_rate(tmp_path):
    http, _ = client(drip)
    clock = Clock(step=2.0)  # every chunk "takes" 2 s: 0.5 B/s
    with pytest.raises(SlowDownloadError, match=r"too slow: 0\.0 KiB/s") as info:
        download(http, f"{HOME}/dl/1", tmp_path, "a.safetensors", None, clock=clock)
    assert "partial file" in str(info.value)
    assert files_in(tmp_path) == [".a.safetensors.part"]  # kept for a resume


def test_a_total_deadline_per_file(tmp_path):
    http, _ = client(drip)
    policy = DownloadPolicy(min_rate_bytes_s=0, max_file_s=3600)
    with pytest.raises(SlowDownloadError, match="took longer than 3600 s"):
        download(http, f"{HOME}/dl/1", tmp_path, "a.safetensors", None, None, policy, Clock(2.0))


def test_the_time_budget_is_honoured_mid_download(tmp_path):
    http, _ = client(drip)
    clock = Clock(step=0.001)  # fast enough for the rate check
    policy = DownloadPolicy(deadline=clock.now + 5.0)
    with pytest.raises(TimeBudgetError, match=r"time budget reached .* next run resumes it"):
        download(http, f"{HOME}/dl/1", tmp_path, "a.safetensors", None, None, policy, clock)
    assert 4000 <= (tmp_path / ".a.safetensors.part").stat().st_size <= 5001


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"<!DOCTYPE html><html><form>Log in</form></html>", "is an HTML page"),
        (b'{"error": "Unauthorized"}', "is a JSON document"),
        (b"\x00" * 5000, "not a readable safetensors file"),
        (WEIGHTS[:-100], "data truncated"),
    ],
)
def test_what_is_not_weights_is_never_kept(tmp_path, body, match):
    http, _ = client(lambda r: ok(body))
    with pytest.raises(NotWeightsError, match=match):
        download(http, f"{HOME}/dl/1", tmp_path, "a.safetensors", None)
    assert files_in(tmp_path) == []


def test_a_size_far_from_the_declared_one_is_refused(tmp_path):
    http, _ = client(lambda r: ok(WEIGHTS))
    with pytest.raises(
        NotWeightsError, match=f"declared 900000 bytes, the server sends {len(WEIGHTS)}"
    ):
        download(http, f"{HOME}/dl/1", tmp_path, "a.safetensors", None, 900_000)
    assert files_in(tmp_path) == []
    near = len(WEIGHTS) + 1000  # sizes in KB rounded by the platform: accepted
    assert download(http, f"{HOME}/dl/1", tmp_path, "a.safetensors", None, near).size_bytes


def test_a_pickle_container_passes_only_with_the_opt_in(tmp_path):
    zipped = b"PK\x03\x04" + bytes(2000)
    http, _ = client(lambda r: ok(zipped))
    policy = DownloadPolicy(allow_pickle=True)
    got = download(http, f"{HOME}/dl/1", tmp_path, "a.ckpt", None, None, policy)
    assert got.size_bytes == len(zipped)


def test_api_bodies_have_a_size_cap_and_a_deadline(monkeypatch):
    big, _ = client(lambda r: httpx.Response(200, content=b"[" + b"1," * 600_000 + b"1]"))
    big.policy = big.policy.model_copy(update={"max_body_bytes": 2**20})
    with pytest.raises(PlatformHTTPError, match="sent more than 1 MiB"):
        big.get_json(f"{HOME}/api/v1/models")
    slow, _ = client(drip)
    clock = Clock(step=1.0)
    monkeypatch.setattr("tools.platforms.http.time.monotonic", clock)
    with pytest.raises(PlatformHTTPError, match="took more than 120 s"):
        slow.get_json(f"{HOME}/api/v1/models")
