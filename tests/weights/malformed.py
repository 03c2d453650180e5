"""Malformed weight files made from real ones: broken headers, offsets, dtypes, shapes, data,
semantically broken LoRAs (rank 0, mismatched ranks) and broken diffusers folders."""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def split(path: Path) -> tuple[dict, bytes]:
    raw = Path(path).read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + size]), raw[8 + size :]


def join(header: object, data: bytes) -> bytes:
    blob = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack("<Q", len(blob)) + blob + data


def _header_mutations(header: dict, data: bytes, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    # matrices: a scalar entry (alpha) would keep a valid layout under some mutations
    keys = [k for k in header if k != "__metadata__" and len(header[k]["shape"]) >= 2]

    def edit(fn) -> bytes:
        copy = json.loads(json.dumps(header))
        fn(copy, copy[rng.choice(keys)])
        return join(copy, data)

    def set_field(field, value):
        return lambda h, e: e.__setitem__(field, value)

    big = len(data) + rng.randrange(1, 10**6)
    yield "offsets out of range", edit(lambda h, e: e.__setitem__("data_offsets", [0, big]))
    yield (
        "end beyond data",
        edit(lambda h, e: e.__setitem__("data_offsets", [e["data_offsets"][0], big])),
    )
    yield (
        "negative offset",
        edit(
            lambda h, e: e.__setitem__(
                "data_offsets", [-rng.randrange(1, 99), e["data_offsets"][1]]
            )
        ),
    )
    yield (
        "reversed offsets",
        edit(lambda h, e: e.__setitem__("data_offsets", e["data_offsets"][::-1])),
    )
    yield (
        "overlapping offsets",
        edit(
            lambda h, e: e.__setitem__(
                "data_offsets", [0, e["data_offsets"][1] - e["data_offsets"][0]]
            )
        ),
    )
    yield "three offsets", edit(set_field("data_offsets", [0, 4, 8]))
    yield "float offsets", edit(set_field("data_offsets", [0.5, 4.5]))
    yield "string offsets", edit(set_field("data_offsets", ["0", "4"]))
    for dtype in ("F17", "float32", "", None, 4, ["F32"], "U64", "C64"):
        yield f"dtype {dtype!r}", edit(set_field("dtype", dtype))
    yield (
        "other dtype size",
        edit(lambda h, e: e.__setitem__("dtype", "F16" if e["dtype"] != "F16" else "F32")),
    )
    for shape in ([], [-1, 4], [2**62, 2**62], "4x4", None, [1.5], [[2]], [True, 2]):
        yield f"shape {shape!r}", edit(set_field("shape", shape))
    yield "rank changed", edit(lambda h, e: e.__setitem__("shape", [*e["shape"], 1]))
    yield "shape swapped", edit(lambda h, e: e.__setitem__("shape", [*e["shape"][::-1], 2]))
    for field in ("dtype", "shape", "data_offsets"):
        yield f"no {field}", edit(lambda h, e, f=field: e.pop(f))
    yield "entry is a list", edit(lambda h, e: e.clear() or h.__setitem__(rng.choice(keys), [1]))
    yield "entry is null", join({**header, rng.choice(keys): None}, data)
    yield "metadata not strings", join({**header, "__metadata__": {"a": 1, "b": [2]}}, data)
    yield "metadata a list", join({**header, "__metadata__": ["x"]}, data)
    for value in ([], None, 7, "text", True, [header]):
        yield f"header is {type(value).__name__}", join(value, data)
    yield "empty header, data left", join({}, data)
    depth = rng.choice([1000, 10_000, 100_000])
    yield f"nested {depth} deep", join(b"[" * depth + b"]" * depth, data)
    yield "nested object", join(b'{"a":' * 5000 + b"1" + b"}" * 5000, data)
    yield "not JSON", join(b"{not json at all", data)
    yield "invalid UTF-8", join(b'{"\xff\xfe": 1}', data)
    yield "NUL header", join(b"\x00" * 64, data)


def _raw_mutations(raw: bytes, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    (size,) = struct.unpack("<Q", raw[:8])
    yield "empty file", b""
    yield "three bytes", raw[:3]
    yield "length only", raw[:8]
    yield "header cut", raw[: 8 + rng.randrange(1, size)]
    for _ in range(3):
        cut = rng.randrange(8 + size, len(raw))
        yield f"data truncated at {cut}", raw[:cut]
    yield "data extended", raw + bytes(rng.randrange(1, 4096))
    yield "length zero", struct.pack("<Q", 0) + raw[8:]
    yield "length huge", struct.pack("<Q", 2**63) + raw[8:]
    yield "length past end", struct.pack("<Q", len(raw)) + raw[8:]
    yield "length short", struct.pack("<Q", size - rng.randrange(1, 20)) + raw[8:]
    for _ in range(3):
        flipped = bytearray(raw)
        for _ in range(rng.randrange(1, 6)):
            i = rng.randrange(8, 8 + size)
            flipped[i] = rng.randrange(256)
        yield "header bytes flipped", bytes(flipped)
    yield "random bytes", rng.randbytes(rng.randrange(8, 5000))
    yield "HTML page", b"<!DOCTYPE html><html><body>Log in</body></html>"


def _lora_mutations(path: Path, rng: random.Random) -> Iterator[tuple[str, dict]]:
    """Valid safetensors files whose LoRA tensors are inconsistent."""
    tensors = load_file(str(path))
    downs = [k for k in tensors if k.endswith("lora_down.weight")]
    down = rng.choice(downs)
    up = down.replace("lora_down", "lora_up")
    alpha = down.replace("lora_down.weight", "alpha")
    r, cin = tensors[down].shape[:2]
    cout = tensors[up].shape[0]

    def changed(**new) -> dict:
        return {**tensors, **new}

    yield "rank 0", changed(**{down: torch.zeros(0, cin), up: torch.zeros(cout, 0)})
    yield "rank mismatch", changed(**{down: torch.zeros(r + 1, cin)})
    yield "wrong input width", changed(**{down: torch.zeros(r, cin + 3)})
    yield "wrong output width", changed(**{up: torch.zeros(cout + 5, r)})
    yield "down is 1-d", changed(**{down: torch.zeros(r)})
    yield "up is 3-d", changed(**{up: torch.zeros(cout, r, 2)})
    yield "alpha is a matrix", changed(**{alpha: torch.zeros(2, 2)})
    yield "alpha is int8", changed(**{alpha: torch.tensor(4, dtype=torch.int8)})
    yield "no up", {k: v for k, v in tensors.items() if k != up}
    yield "no down", {k: v for k, v in tensors.items() if k != down}
    yield "bool tensor", changed(**{down: torch.zeros(r, cin, dtype=torch.bool)})
    yield "empty file of tensors", {}
    yield "unknown keys only", {"foo.bar": torch.zeros(2)}


def malformed_files(valid: Path, folder: Path, count: int, seed: int = 0) -> list[tuple[str, Path]]:
    """``count`` (or a few more) malformed files made from the valid LoRA ``valid``."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    raw = Path(valid).read_bytes()
    header, data = split(valid)
    out: list[tuple[str, Path]] = []
    while len(out) < count:
        n = len(out)
        for name, blob in [*_header_mutations(header, data, rng), *_raw_mutations(raw, rng)]:
            path = folder / f"m{len(out):04d}.safetensors"
            path.write_bytes(blob)
            out.append((name, path))
        for name, tensors in _lora_mutations(valid, rng):
            path = folder / f"m{len(out):04d}.safetensors"
            save_file(tensors, str(path))
            out.append((name, path))
        assert len(out) > n
    return out


def broken_folders(valid_folder: Path, folder: Path) -> list[tuple[str, Path]]:
    """Diffusers folders (copies of ``valid_folder``) with a broken ``model_index.json``."""
    import shutil

    out = []
    for name, text in [
        ("model_index not JSON", "{broken"),
        ("model_index a list", "[1, 2]"),
        ("model_index null", "null"),
        ("model_index without components", '{"_class_name": "StableDiffusionPipeline"}'),
        ("model_index bad component", '{"unet": 7, "vae": ["x"]}'),
        ("model_index invalid UTF-8", b"\xff\xfe{".decode("latin-1")),
    ]:
        target = folder / name.replace(" ", "_")
        shutil.copytree(valid_folder, target)
        (target / "model_index.json").write_text(text, encoding="latin-1")
        out.append((name, target))
    empty = folder / "empty_folder"
    empty.mkdir()
    out.append(("empty folder", empty))
    return out
