"""Writing one result's files (images, recipe, exports) all or none.

Each file goes to a temporary name beside its target; only when every one is written are
they renamed into place. A full disk or a refused folder leaves nothing half-written.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from agents.pipeline.errors import PipelineError

Writer = Callable[[Path], None]


def write_all(out_dir: Path, writers: Mapping[str, Writer]) -> list[Path]:
    """Run ``writers[name](temporary path)`` for each file, then move all into ``out_dir``."""
    staged: dict[Path, Path] = {}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, write in writers.items():
            target = out_dir / name
            staged[target] = out_dir / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
            write(staged[target])
        for target, tmp in staged.items():
            os.replace(tmp, target)
    except BaseException as exc:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise PipelineError(
                f"could not write the results to {out_dir} ({exc.strerror}): free disk space "
                "or choose another --out; nothing of this result was written"
            ) from exc
        raise
    return list(staged)


def text_writer(text: str) -> Writer:
    return lambda path: path.write_text(text, encoding="utf-8")


def png_writer(image, parameters: str | None = None) -> Writer:
    """A ``[3, H, W]`` image in [0, 1] as PNG (``parameters``: A1111's prompt text in it)."""

    def write(path: Path) -> None:
        from PIL import Image

        array = (image.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
        Image.fromarray(array).save(
            path, format="PNG", pnginfo=_png_info(parameters) if parameters else None
        )

    return write


def _png_info(parameters: str):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", parameters)  # what A1111's "PNG Info" tab reads
    return info
