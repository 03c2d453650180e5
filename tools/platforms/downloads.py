"""Safe weight downloads: sanitised names, size and disk checks, Range resume, SHA-256.

The file is written to ``.<name>.part`` beside its destination and renamed into place only
after its hash matched, so a kill or a broken connection never leaves a file that looks
complete; the next call resumes the partial file with an HTTP Range request.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import unicodedata
from pathlib import Path

import httpx
from pydantic import BaseModel, Field

from tools.platforms.errors import (
    DiskSpaceError,
    DownloadError,
    FileTooLargeError,
    HashMismatchError,
    PlatformHTTPError,
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


def _check_size(name: str, size: int | None, policy: DownloadPolicy) -> None:
    if size is not None and size > policy.max_bytes:
        raise FileTooLargeError(
            f"refusing to download {name}: {size / 2**30:.2f} GiB is over the limit of "
            f"{policy.max_bytes / 2**30:.2f} GiB; raise DIFFGRAPH_PLATFORMS__MAX_FILE_GB "
            "to accept it"
        )


def _check_disk(dest_dir: Path, name: str, remaining: int | None, policy: DownloadPolicy) -> None:
    free = shutil.disk_usage(dest_dir).free
    need = (remaining or 0) + policy.min_free_bytes
    if free < need:
        raise DiskSpaceError(
            f"not enough disk for {name} in {dest_dir}: {free / 2**30:.2f} GiB free, need "
            f"{need / 2**30:.2f} GiB ({(remaining or 0) / 2**30:.2f} GiB file + "
            f"{policy.min_free_bytes / 2**30:.2f} GiB kept free); free space or lower "
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
) -> DownloadedFile:
    """Download ``url`` to ``dest_dir/<sanitised name>`` and verify it against ``sha256``.

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
    resumed = offset > 0
    breaks = 0
    while True:
        try:
            _fetch(http, url, part, filename, policy)
            break
        except (httpx.TransportError, PlatformHTTPError) as exc:
            if isinstance(exc, PlatformHTTPError) and exc.status not in (None, 416):
                raise DownloadError(f"download of {filename} failed: {exc}") from exc
            breaks += 1
            if breaks > policy.max_resumes:
                raise DownloadError(
                    f"download of {filename} broke {breaks} times ({type(exc).__name__}); the "
                    f"partial file {part} is kept: run again to resume"
                ) from exc
            resumed = True
            log.info("download of %s broke (%s); resuming", filename, type(exc).__name__)
    got = sha256_file(part)
    if expected and got != expected:
        part.unlink(missing_ok=True)
        raise HashMismatchError(
            f"{filename} from {url} has SHA-256 {got}, the platform says {expected}: the file "
            "is corrupt or was replaced upstream; it was deleted - report it to the platform "
            "or skip this expert"
        )
    if not expected:
        log.warning("%s: the platform published no SHA-256; stored unverified", filename)
    size = part.stat().st_size
    os.replace(part, final)
    return DownloadedFile(
        path=str(final), sha256=got, size_bytes=size, verified=bool(expected), resumed=resumed
    )


def _fetch(http: HttpClient, url: str, part: Path, name: str, policy: DownloadPolicy) -> None:
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
            handle.flush()
            os.fsync(handle.fileno())
        if length is not None and length.isdigit() and written != offset + int(length):
            raise httpx.RemoteProtocolError(
                f"transfer ended at {written} of {offset + int(length)} bytes"
            )
    finally:
        response.close()
