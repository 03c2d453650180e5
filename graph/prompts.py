"""Reading prompt files: plain text (one per line) or JSON lines with a prompt field."""

from __future__ import annotations

from pathlib import Path

from graph.errors import DiffGraphError
from graph.input_files import BOM, parse_json, read_text

PROMPT_FIELDS = ("prompt", "text", "caption")


def read_prompts(path: Path, limit: int | None = None) -> list[str]:
    """Prompts from ``path``; ``.jsonl`` lines need one of the fields ``prompt`` / ``text``.

    Byte-order marks are dropped (also those of concatenated files, at a line's start).
    """
    path = Path(path)
    prompts: list[str] = []
    for number, line in enumerate(read_text(path, "prompt file").splitlines(), 1):
        line = line.lstrip(BOM).strip()
        if not line:
            continue
        if path.suffix in (".jsonl", ".json"):
            item = parse_json(line, f"{path}:{number}")
            text = next(
                (item[f] for f in PROMPT_FIELDS if isinstance(item, dict) and f in item), None
            )
            if not isinstance(text, str):
                raise DiffGraphError(
                    f"{path}:{number} has no string field {' / '.join(PROMPT_FIELDS)}"
                )
            line = text.strip()
        prompts.append(line)
        if limit is not None and len(prompts) >= limit:
            break
    return prompts
