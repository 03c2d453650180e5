"""Safe downloads: resume, hash check, size and disk limits, file names, atomic rename."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from tests.platforms.conftest import safetensors_blob
from tools.platforms.downloads import DownloadPolicy, download, safe_filename
from tools.platforms.errors import (
    DiskSpaceError,
    DownloadError,
    FileTooLargeError,
    HashMismatchError,
    UnsafeFileError,
)
from tools.platforms.http import HttpClient, HttpPolicy


@pytest.fixture
def dest(tmp_path):
    return tmp_path / "downloads"


def _weights(civitai, demo, slug):
    model = civitai.model(str(demo.catalogue.by_slug(slug).id))
    return model.latest.weight_file()


def test_a_broken_download_resumes_with_range(civitai, demo, dest):
    file = _weights(civitai, demo, "ink-sketch")
    got = download(civitai.http, file.download_url, dest, file.name, file.sha256, file.size_bytes)
    assert got.resumed and got.verified and got.sha256 == file.sha256
    assert (dest / file.name).read_bytes() == demo.weights.info(
        *demo.catalogue.version(int(file.download_url.rsplit("/", 1)[1]))
    ).path.read_bytes()
    downloads = [r for r in demo.requests if r.path.startswith("/api/download/")]
    assert [(r.status, r.range) for r in downloads] == [
        (200, None),
        (206, f"bytes={file.size_bytes // 2}-"),
    ]
    assert all(r.authorized for r in downloads)
    assert not list(dest.glob(".*.part"))


def test_a_kill_mid_download_resumes_in_the_next_run(civitai, demo, dest):
    file = _weights(civitai, demo, "ink-sketch")
    policy = DownloadPolicy(max_resumes=0)
    with pytest.raises(DownloadError, match=r"partial file .* is kept: run again to resume"):
        download(civitai.http, file.download_url, dest, file.name, file.sha256, None, policy)
    part = dest / f".{file.name}.part"
    assert part.stat().st_size == file.size_bytes // 2
    assert not (dest / file.name).exists()
    got = download(civitai.http, file.download_url, dest, file.name, file.sha256, None, policy)
    assert got.resumed and got.sha256 == file.sha256 and not part.exists()


def test_a_bad_hash_is_rejected_and_nothing_is_kept(civitai, demo, dest):
    file = _weights(civitai, demo, "claymation")
    with pytest.raises(HashMismatchError, match="the platform says") as info:
        download(civitai.http, file.download_url, dest, file.name, file.sha256, file.size_bytes)
    assert file.sha256 in str(info.value)
    assert not dest.exists() or list(dest.iterdir()) == []


def test_a_verified_file_is_not_downloaded_twice(civitai, demo, dest):
    file = _weights(civitai, demo, "pixel-art")
    download(civitai.http, file.download_url, dest, file.name, file.sha256)
    count = len(demo.requests)
    again = download(civitai.http, file.download_url, dest, file.name, file.sha256)
    assert again.verified and len(demo.requests) == count


def test_missing_api_key_gives_an_actionable_error(demo, dest):
    with HttpClient("demo", HttpPolicy(requests_per_s=1000)) as http:
        url = f"{demo.url}/api/download/models/900101"
        with pytest.raises(DownloadError, match=r"not authorised.*CIVITAI_API_KEY"):
            download(http, url, dest, "a.safetensors", None)


def test_size_limits(civitai, demo, dest):
    file = _weights(civitai, demo, "pixel-art")
    small = DownloadPolicy(max_bytes=1000)
    count = len(demo.requests)
    with pytest.raises(FileTooLargeError, match="over the limit"):
        download(
            civitai.http, file.download_url, dest, file.name, file.sha256, file.size_bytes, small
        )
    assert len(demo.requests) == count  # refused before any request
    with pytest.raises(FileTooLargeError):  # size unknown up front: Content-Length catches it
        download(civitai.http, file.download_url, dest, file.name, file.sha256, None, small)
    assert not dest.exists() or list(dest.iterdir()) == []


def test_streams_without_content_length_are_cut_at_the_limit(tmp_path):
    def handler(request):
        return httpx.Response(200, content=iter([b"x" * 600, b"y" * 600]))

    http = HttpClient("t", transport=httpx.MockTransport(handler))
    with pytest.raises(FileTooLargeError):
        download(
            http,
            "https://x.test/f",
            tmp_path,
            "f.safetensors",
            None,
            None,
            DownloadPolicy(max_bytes=1000),
        )
    assert list(tmp_path.iterdir()) == []


def test_a_server_ignoring_range_restarts_the_file(tmp_path):
    body = safetensors_blob(b"0123456789" * 100)
    (tmp_path / ".f.safetensors.part").write_bytes(b"garbage")
    http = HttpClient(
        "t",
        transport=httpx.MockTransport(lambda r: httpx.Response(200, stream=httpx.ByteStream(body))),
    )
    got = download(
        http, "https://x.test/f", tmp_path, "f.safetensors", hashlib.sha256(body).hexdigest()
    )
    assert (tmp_path / "f.safetensors").read_bytes() == body and got.verified


def test_disk_space_is_checked_first(civitai, demo, dest):
    file = _weights(civitai, demo, "pixel-art")
    count = len(demo.requests)
    greedy = DownloadPolicy(min_free_bytes=2**60)
    with pytest.raises(DiskSpaceError, match="not enough disk"):
        download(
            civitai.http, file.download_url, dest, file.name, file.sha256, file.size_bytes, greedy
        )
    assert len(demo.requests) == count


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/evil.safetensors", "evil.safetensors"),
        ("C:\\models\\lora.safetensors", "lora.safetensors"),
        ("my lora <v2>:final.safetensors", "my_lora_v2_final.safetensors"),
        ("Café ☕.safetensors", "Caf_.safetensors"),
    ],
)
def test_file_names_are_sanitised(name, expected):
    assert safe_filename(name) == expected


@pytest.mark.parametrize("name", ["model.ckpt", "weights.bin", "../", ".safetensors", "x.exe", ""])
def test_unsafe_names_are_refused(name):
    with pytest.raises(UnsafeFileError, match="refusing to download"):
        safe_filename(name)


def test_pickles_only_with_opt_in():
    with pytest.raises(UnsafeFileError, match="--allow-pickle"):
        safe_filename("model.ckpt")
    assert safe_filename("model.ckpt", allow_pickle=True) == "model.ckpt"


def test_a_size_just_over_the_limit_is_shown_in_bytes(civitai, demo, dest):
    file = _weights(civitai, demo, "pixel-art")
    limit = DownloadPolicy(max_bytes=int(0.01 * 2**30))
    with pytest.raises(FileTooLargeError) as refused:
        download(civitai.http, file.download_url, dest, file.name, None, limit.max_bytes + 1, limit)
    assert "10,737,419 bytes is over the limit of 10,737,418 bytes" in str(refused.value)
