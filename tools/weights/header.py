"""Strict, torch-free checks of weight files: safetensors headers and pickle containers.

The safetensors header is checked as strictly as the safetensors loader does (known dtypes,
shapes of non-negative integers, offsets that match the shapes and tile the data exactly),
so a file that passes loads without surprises and a broken one fails here, by name.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from tools.weights.errors import UnsupportedFormatError, WeightsError

DTYPE_SIZES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}
MAX_HEADER_BYTES = 100 * 2**20
_ZIP = b"PK\x03\x04"  # torch.save's zip container
_PICKLE = b"\x80"  # a pickle stream (protocol 2+), the legacy torch format


def regular_file(path: Path, what: str = "weights file") -> Path:
    """``path`` if it is a regular file; a clear error for a missing path, a FIFO, a device."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{what} {path} does not exist")
    if not path.is_file():
        raise WeightsError(
            f"{what} {path} is not a regular file (a folder, FIFO or device); expected a "
            ".safetensors file. Fix: point at the weights file itself"
        )
    return path


def read_header(path: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """The tensor entries (dtype, shape, offsets) and string metadata of a safetensors file."""
    path = regular_file(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(8)
            if len(raw) < 8:
                raise ValueError("file shorter than the 8-byte header length")
            (size,) = struct.unpack("<Q", raw)
            total = os.fstat(handle.fileno()).st_size
            if size > MAX_HEADER_BYTES or size > total - 8:
                raise ValueError(f"implausible header length {size}")
            header = json.loads(handle.read(size))
        metadata = check_header(header, total - 8 - size)
    except (OSError, ValueError, RecursionError) as exc:  # JSON / UTF-8 errors are ValueErrors
        reason = "header nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise UnsupportedFormatError(
            f"{path} is not a readable safetensors file ({_line(reason)}); expected a "
            ".safetensors file as written by safetensors, kohya, diffusers or A1111. "
            "Fix: re-download the file"
        ) from exc
    return header, metadata


def check_header(header: object, data_size: int) -> dict[str, str]:
    """Validate a parsed header in place (``__metadata__`` removed); return the metadata."""
    if not isinstance(header, dict):
        raise ValueError(f"the header is a JSON {type(header).__name__}, not an object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError("__metadata__ must map names to strings")
    spans = []
    for key, entry in header.items():
        if not isinstance(entry, dict):
            raise ValueError(f"entry {key[:80]!r} is not an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
            raise ValueError(f"{key[:80]}: unknown dtype {str(dtype)[:20]!r}")
        if not isinstance(shape, list) or not all(_natural(n) for n in shape):
            raise ValueError(f"{key[:80]}: shape must be a list of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_natural, offsets))):
            raise ValueError(f"{key[:80]}: data_offsets must be two non-negative integers")
        begin, end = offsets
        numel = 1
        for n in shape:
            numel *= n
        if end - begin != numel * DTYPE_SIZES[dtype]:
            raise ValueError(f"{key[:80]}: data_offsets do not match dtype and shape")
        spans.append((begin, end, key))
    position = 0
    for begin, end, key in sorted(spans):
        if begin != position:
            gap = "overlap" if begin < position else "a gap"
            raise ValueError(f"{key[:80]}: data_offsets {gap} at byte {position}")
        position = end
    if position != data_size:
        state = "truncated" if position > data_size else "longer than its tensors"
        raise ValueError(
            f"data {state}: the header covers {position} bytes, the file has {data_size}"
        )
    return dict(metadata)


def check_weights_file(path: Path, pickle_allowed: bool = False) -> str:
    """The format of a downloaded weights file (``"safetensors"`` or ``"pickle"``), after a
    check of its layout; an HTML page, a JSON error or random bytes raise a clear error."""
    path = regular_file(path)
    with path.open("rb") as handle:
        head = handle.read(512)
    if pickle_allowed and (head.startswith(_ZIP) or head.startswith(_PICKLE)):
        return "pickle"  # recognised container; never unpickled here
    if head.lstrip()[:1] in (b"<", b"{", b"["):
        kind = "an HTML page" if head.lstrip()[:1] == b"<" else "a JSON document"
        raise UnsupportedFormatError(
            f"{path} is {kind} ({_line(head[:80].decode('utf-8', 'replace'))!r}), not weights: "
            "the platform served a login, error or landing page. Fix: check the API key, or "
            "skip this item"
        )
    read_header(path)
    return "safetensors"


def _natural(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _line(text: str, limit: int = 300) -> str:
    return " ".join(text.split())[:limit]
