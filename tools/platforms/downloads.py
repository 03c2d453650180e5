"""Safe weight downloads: sanitised names, size and disk checks, Range resume, SHA-256.

The file is written to ``.<name>.part`` beside its destination and renamed into place only
after its hash matched and its layout was checked (a safetensors header, or a recognised
pickle container), so a kill, a broken connection or a login page never leaves a file that
looks complete; the next call resumes the partial file with an HTTP Range request. A
transfer slower than ``min_rate_bytes_s``, longer than ``max_file_s`` or past the crawl's
deadline stops with the partial file kept.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

import httpx
from pydantic import BaseModel, Field

from tools.platforms.errors import (
    DiskSpaceError,
    DownloadError,
    FileTooLargeError,
    HashMismatchError,
    NotWeightsError,
    PlatformHTTPError,
    RedirectError,
    SlowDownloadError,
    TimeBudgetError,
    UnsafeFileError,
)
from tools.platforms.http import HttpClient
from tools.platforms.records import PICKLE_SUFFIXES, DownloadedFile

log = logging.getLogger(__name__)

CHUNK = 1 << 20
SAFE_SUFFIXES = (".safetensors",)
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._+-]+")


class DownloadPolicy(BaseModel):
    """Limits every download obeys."""

    max_bytes: int = Field(8 * 2**30, gt=0)
    min_free_bytes: int = Field(2**30, ge=0, description="free disk left after the download")
    allow_pickle: bool = Field(False, description="accept .ckpt/.pt/.bin (never unpickled here)")
    max_resumes: int = Field(5, ge=0, description="broken transfers resumed before giving up")
    min_rate_bytes_s: int = Field(
        16 * 2**10, ge=0, description="slowest accepted transfer, averaged per rate window; 0: off"
    )
    rate_window_s: float = Field(60.0, gt=0)
    max_file_s: float = Field(6 * 3600.0, gt=0, description="total deadline of one file")
    size_tolerance: float = Field(
        0.05, ge=0, description="refuse a file whose size is this far (relative) from the declared"
    )
    deadline: float | None = Field(
        None, description="time.monotonic() at which the caller's time budget runs out"
    )


def safe_filename(name: str, allow_pickle: bool = False) -> str:
    """A plain file name for ``name`` from a platform; raises UnsafeFileError when none is."""
    base = unicodedata.normalize("NFKC", name).replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE_CHARS.sub("_", base).strip("._ ")[:180]
    suffix = Path(cleaned).suffix.lower()
    allowed = SAFE_SUFFIXES + (PICKLE_SUFFIXES if allow_pickle else ())
    if not cleaned or not Path(cleaned).stem or suffix not in allowed:
        hint = (
            " (pickle formats run code when loaded: pass --allow-pickle only for files you trust)"
            if suffix in PICKLE_SUFFIXES
            else ""
        )
        raise UnsafeFileError(
            f"refusing to download {name!r}: expected a file name ending in "
            f"{', '.join(allowed)}, got {cleaned or 'an empty name'!r}{hint}"
        )
    if cleaned != name:
        log.info("file name %r sanitised to %r", name, cleaned)
    return cleaned


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _gib(*sizes: int) -> list[str]:
    """Byte counts as GiB with two decimals, or as bytes where those would look equal."""
    shown = [f"{size / 2**30:.2f} GiB" for size in sizes]
    if len(set(shown)) < len(set(sizes)):
        return [f"{size:,} bytes" for size in sizes]
    return shown


def _check_size(name: str, size: int | None, policy: DownloadPolicy) -> None:
    if size is not None and size > policy.max_bytes:
        got, limit = _gib(size, policy.max_bytes)
        raise FileTooLargeError(
            f"refusing to download {name}: {got} is over the limit of {limit}; raise "
            "DIFFGRAPH_PLATFORMS__MAX_FILE_GB to accept it"
        )


def _check_declared(name: str, declared: int | None, got: int, policy: DownloadPolicy) -> None:
    """Refuse ``got`` bytes when the platform declared a size far from it."""
    if not declared:
        return
    if abs(got - declared) > max(64 * 2**10, policy.size_tolerance * declared):
        raise NotWeightsError(
            f"{name}: the platform declared {declared} bytes, the server sends {got}: not the "
            "published file (an error page, or a truncated or replaced file); skip this item "
            "or report it to the platform"
        )


def _check_disk(dest_dir: Path, name: str, remaining: int | None, policy: DownloadPolicy) -> None:
    free = shutil.disk_usage(dest_dir).free
    need = (remaining or 0) + policy.min_free_bytes
    if free < need:
        shown = _gib(free, need, remaining or 0, policy.min_free_bytes)
        raise DiskSpaceError(
            f"not enough disk for {name} in {dest_dir}: {shown[0]} free, need {shown[1]} "
            f"({shown[2]} file + {shown[3]} kept free); free space or lower "
            "DIFFGRAPH_PLATFORMS__MIN_FREE_GB"
        )


def download(
    http: HttpClient,
    url: str,
    dest_dir: Path,
    name: str,
    sha256: str | None,
    size_bytes: int | None = None,
    policy: DownloadPolicy | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> DownloadedFile:
    """Download ``url`` to ``dest_dir/<sanitised name>``, verify it against ``sha256`` and
    the declared ``size_bytes``, and check that it is a weights file.

    An existing final file with the right hash is reused; a ``.part`` file is resumed.
    """
    policy = policy or DownloadPolicy()
    filename = safe_filename(name, policy.allow_pickle)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / filename
    part = dest_dir / f".{filename}.part"
    expected = sha256.lower() if sha256 else None
    _check_size(filename, size_bytes, policy)
    if final.exists() and expected and sha256_file(final) == expected:
        log.info("%s already downloaded and verified", final)
        return DownloadedFile(
            path=str(final), sha256=expected, size_bytes=final.stat().st_size, verified=True
        )
    offset = part.stat().st_size if part.exists() else 0
    _check_disk(dest_dir, filename, None if size_bytes is None else size_bytes - offset, policy)
    pace = _Pace(filename, part, policy, clock)
    resumed = offset > 0
    breaks = 0
    while True:
        pace.check(0)
        try:
            _fetch(http, url, part, filename, policy, size_bytes, pace)
            break
        except (httpx.TransportError, PlatformHTTPError) as exc:
            if isinstance(exc, RedirectError) or (
                isinstance(exc, PlatformHTTPError) and exc.status not in (None, 416)
            ):
                raise DownloadError(f"download of {filename} failed: {exc}") from exc
            breaks += 1
            if breaks > policy.max_resumes:
                raise DownloadError(
                    f"download of {filename} broke {breaks} times ({type(exc).__name__}); the "
                    f"partial file {part} is kept: run again to resume"
                ) from exc
            resumed = True
            log.info("download of %s broke (%s); resuming", filename, type(exc).__name__)
    size = part.stat().st_size
    try:
        _check_declared(filename, size_bytes, size, policy)
        got = sha256_file(part)
        if expected and got != expected:
            raise HashMismatchError(
                f"{filename} from {url} has SHA-256 {got}, the platform says {expected}: the "
                "file is corrupt or was replaced upstream; it was deleted - report it to the "
                "platform or skip this expert"
            )
        _check_format(part, filename, policy)
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    if not expected:
        log.warning("%s: the platform published no SHA-256; stored unverified", filename)
    os.replace(part, final)
    return DownloadedFile(
        path=str(final), sha256=got, size_bytes=size, verified=bool(expected), resumed=resumed
    )


def _check_format(part: Path, name: str, policy: DownloadPolicy) -> None:
    """Refuse a download that is no weights file (torch-free: the header is read only)."""
    from tools.weights.errors import WeightsError
    from tools.weights.header import check_weights_file

    try:
        check_weights_file(part, pickle_allowed=policy.allow_pickle)
    except WeightsError as exc:
        reason = str(exc).replace(str(part), name)
        raise NotWeightsError(f"{reason}; the download was deleted") from exc


class _Pace:
    """Stops a transfer that is too slow, too long, or past the caller's deadline."""

    def __init__(
        self, name: str, part: Path, policy: DownloadPolicy, clock: Callable[[], float]
    ) -> None:
        self.name, self.part, self.policy, self.clock = name, part, policy, clock
        self.start = self.window_start = clock()
        self.window_bytes = 0

    def check(self, received: int) -> None:
        now = self.clock()
        policy = self.policy
        if policy.deadline is not None and now >= policy.deadline:
            raise TimeBudgetError(
                f"time budget reached while downloading {self.name}; the partial file "
                f"{self.part} is kept: the next run resumes it"
            )
        if now - self.start > policy.max_file_s:
            raise SlowDownloadError(
                f"download of {self.name} took longer than {policy.max_file_s:.0f} s; the "
                f"partial file {self.part} is kept: run again to resume"
            )
        self.window_bytes += received
        elapsed = now - self.window_start
        if elapsed >= policy.rate_window_s:
            rate = self.window_bytes / elapsed
            if rate < policy.min_rate_bytes_s:
                raise SlowDownloadError(
                    f"download of {self.name} too slow: {rate / 2**10:.1f} KiB/s over the last "
                    f"{elapsed:.0f} s, the minimum is {policy.min_rate_bytes_s / 2**10:.1f} "
                    f"KiB/s (the server stalls); the partial file {self.part} is kept: run "
                    "again to resume"
                )
            self.window_start, self.window_bytes = now, 0


def _fetch(
    http: HttpClient,
    url: str,
    part: Path,
    name: str,
    policy: DownloadPolicy,
    declared: int | None,
    pace: _Pace,
) -> None:
    """Append the missing bytes to ``part`` (or restart it when Range is not honoured)."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}  # Range offsets count bytes on the wire
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = http.send("GET", url, headers=headers, stream=True)
    except PlatformHTTPError as exc:
        if exc.status == 416 and offset:  # nothing left to fetch: the part file is whole
            return
        raise
    try:
        if offset and response.status_code != 206:
            log.info("%s: the server ignored the Range request; restarting", name)
            offset = 0
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit():
            _check_size(name, offset + int(length), policy)
            _check_declared(name, declared, offset + int(length), policy)
        written = offset
        with open(part, "r+b" if offset else "wb") as handle:
            handle.seek(offset)
            handle.truncate()
            for chunk in response.iter_raw():  # as received: a break keeps what arrived
                written += len(chunk)
                if written > policy.max_bytes:
                    handle.close()
                    part.unlink(missing_ok=True)
                    _check_size(name, written, policy)
                handle.write(chunk)
                pace.check(len(chunk))
            handle.flush()
            os.fsync(handle.fileno())
        if length is not None and length.isdigit() and written != offset + int(length):
            raise httpx.RemoteProtocolError(
                f"transfer ended at {written} of {offset + int(length)} bytes"
            )
    finally:
        response.close()
