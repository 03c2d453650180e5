"""Reading prompt files: plain text (one per line) or JSON lines with a prompt field."""

from __future__ import annotations

import json
from pathlib import Path

from graph.errors import DiffGraphError

PROMPT_FIELDS = ("prompt", "text", "caption")


def read_prompts(path: Path, limit: int | None = None) -> list[str]:
    """Prompts from ``path``; ``.jsonl`` lines need one of the fields ``prompt`` / ``text``."""
    path = Path(path)
    if not path.is_file():
        raise DiffGraphError(f"prompt file {path} does not exist")
    prompts: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if path.suffix in (".jsonl", ".json"):
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DiffGraphError(f"{path}:{number} is not valid JSON: {exc}") from exc
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
