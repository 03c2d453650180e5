"""Reading and writing weight files: safetensors (memory-mapped), refused pickles, hashes.

Writes are atomic (temporary file in the target folder + ``os.replace``). The streaming
writer lays out a safetensors file tensor by tensor, so a merge never holds its output.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

from tools.weights.errors import PickleRefusedError, UnsupportedFormatError, WeightsError
from tools.weights.header import read_header, regular_file

PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin"})
DTYPE_NAMES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
}
TORCH_DTYPES = {name: dtype for dtype, name in DTYPE_NAMES.items()}
_CHUNK = 1 << 20


def is_pickle(path: Path) -> bool:
    return Path(path).suffix.lower() in PICKLE_SUFFIXES


def load_tensors(path: Path, allow_pickle: bool = False) -> dict[str, Tensor]:
    """Every tensor of a weights file (safetensors; pickles only with ``allow_pickle``)."""
    path = regular_file(path)
    if is_pickle(path):
        return _load_pickle(path, allow_pickle)
    read_header(path)  # clear error for a broken file
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except SafetensorError as exc:  # what the header check cannot see
        raise UnsupportedFormatError(f"{path} could not be read by safetensors: {exc}") from exc


def _load_pickle(path: Path, allow_pickle: bool) -> dict[str, Tensor]:
    if not allow_pickle:
        raise PickleRefusedError(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors of every kind
        raise UnsupportedFormatError(
            f"{path} could not be loaded with torch.load(weights_only=True): {exc}. Fix: "
            "convert it to .safetensors with the tool that made it"
        ) from exc
    if (
        isinstance(data, Mapping)
        and "state_dict" in data
        and isinstance(data["state_dict"], Mapping)
    ):
        data = data["state_dict"]
    if not isinstance(data, Mapping):
        raise UnsupportedFormatError(f"{path} holds a {type(data).__name__}, expected a state dict")
    return {str(k): v for k, v in data.items() if isinstance(v, Tensor)}


def read_metadata(path: Path) -> dict[str, str]:
    path = Path(path)
    return {} if is_pickle(path) else read_header(path)[1]


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Key → shape of a safetensors file, read from its header only."""
    return {k: tuple(v["shape"]) for k, v in read_header(path)[0].items()}


class TensorSource:
    """Tensors of one safetensors file read on demand through ``safe_open`` (mmap).

    Touched pages of a memory map count in the resident set until it is unmapped, so the
    map is reopened after ``remap_bytes`` have been read: peak memory stays bounded.
    """

    def __init__(self, path: Path, remap_bytes: int = 256 * 2**20) -> None:
        self.path = Path(path)
        entries, self.metadata = read_header(self.path)
        self.shapes = {k: tuple(v["shape"]) for k, v in entries.items()}
        self.dtypes = {k: v["dtype"] for k, v in entries.items()}
        self._sizes = {k: v["data_offsets"][1] - v["data_offsets"][0] for k, v in entries.items()}
        self._remap = remap_bytes
        self._handle = None
        self._read = 0

    def keys(self) -> list[str]:
        return list(self.shapes)

    def dtype(self, key: str) -> torch.dtype:
        return TORCH_DTYPES[self.dtypes[key]]

    def __contains__(self, key: str) -> bool:
        return key in self.shapes

    def get(self, key: str) -> Tensor:
        from safetensors import SafetensorError, safe_open

        try:
            if self._handle is None or self._read > self._remap:
                self.close()
                self._handle = safe_open(str(self.path), framework="pt")
                self._read = 0
            self._read += self._sizes[key]
            return self._handle.get_tensor(key)
        except SafetensorError as exc:  # e.g. the file changed since its header was read
            raise UnsupportedFormatError(f"{self.path}: cannot read {key}: {exc}") from exc

    def close(self) -> None:
        self._handle = None

    def __enter__(self) -> TensorSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"  # umask applies
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_tensors(
    tensors: Mapping[str, Tensor], path: Path, metadata: Mapping[str, str] | None = None
) -> None:
    """Write a safetensors file atomically."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(
            {k: v.contiguous() for k, v in tensors.items()},
            str(tmp),
            metadata={str(k): str(v) for k, v in (metadata or {}).items()},
        )


class StreamingWriter:
    """Write a safetensors file one tensor at a time, in the order of ``layout``.

    ``layout`` gives every key's dtype and shape up front (the header comes first in the
    file); :meth:`write` must then be called once per key in that order.
    """

    def __init__(
        self,
        path: Path,
        layout: Mapping[str, tuple[torch.dtype, tuple[int, ...]]],
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self._order = list(layout)
        header: dict[str, object] = {}
        if metadata:
            header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
        offset = 0
        self._expect = {}
        for key, (dtype, shape) in layout.items():
            if dtype not in DTYPE_NAMES:
                raise WeightsError(f"cannot store dtype {dtype} of {key} in safetensors")
            size = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
            header[key] = {
                "dtype": DTYPE_NAMES[dtype],
                "shape": list(shape),
                "data_offsets": [offset, offset + size],
            }
            self._expect[key] = (dtype, tuple(shape))
            offset += size
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)
        self._prefix = struct.pack("<Q", len(blob)) + blob
        self._next = 0
        self._ctx = None
        self._handle = None

    def __enter__(self) -> StreamingWriter:
        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        self._handle = tmp.open("wb")
        self._handle.write(self._prefix)
        return self

    def write(self, key: str, tensor: Tensor) -> None:
        if self._next >= len(self._order) or self._order[self._next] != key:
            expected = self._order[self._next] if self._next < len(self._order) else "nothing"
            raise WeightsError(f"streamed tensors out of order: got {key}, expected {expected}")
        dtype, shape = self._expect[key]
        if tensor.dtype != dtype or tuple(tensor.shape) != shape:
            raise WeightsError(
                f"{key}: got {tensor.dtype} {tuple(tensor.shape)}, the header says {dtype} {shape}"
            )
        data = tensor.detach().contiguous().cpu()
        if data.numel():
            self._handle.write(data.reshape(-1).view(torch.uint8).numpy())
        self._next += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        self._handle.close()
        if exc_type is None and self._next != len(self._order):
            missing = len(self._order) - self._next
            exc = WeightsError(f"{self.path}: {missing} tensor(s) were never written")
            self._ctx.__exit__(type(exc), exc, None)
            raise exc
        self._ctx.__exit__(exc_type, exc, tb)


_HASHES: dict[tuple, str] = {}


def sha256_file(path: Path) -> str:
    """SHA-256 of a file (or of every file of a folder, in sorted relative-path order).

    A file's hash is remembered per process by (path, size, modification time).
    """
    path = Path(path)
    if path.is_dir():
        return _sha256(path)
    stat = path.stat()
    stamp = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if stamp not in _HASHES:
        _HASHES[stamp] = _sha256(path)
    return _HASHES[stamp]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def autov2(sha256: str) -> str:
    """Civitai's AutoV2 hash: the first 10 hex digits of the SHA-256, upper case."""
    return sha256[:10].upper()


def addnet_hash(path: Path) -> str:
    """The SHA-256 of a safetensors file's tensor data (its header skipped): kohya's
    ``sshs_model_hash``, A1111's LoRA hash (first 12 digits) and Civitai's AutoV3."""
    path = Path(path)
    stat = path.stat()
    stamp = ("addnet", str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if stamp not in _HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            handle.seek(8 + length)
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        _HASHES[stamp] = digest.hexdigest()
    return _HASHES[stamp]
