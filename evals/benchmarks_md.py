"""Writing benchmark results into the checkout's BENCHMARKS.md, one marked section per script
(bench/ scripts and the evals commands that report figures)."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
HEADER = (
    "# Benchmarks\n\nEach section is written by the script named in it; rerun the script to "
    "refresh it. Peers are measured in the same run, on the same machine.\n"
)


def machine() -> str:
    """One line describing the machine the figures come from."""
    cpu = platform.processor() or platform.machine()
    try:
        model = subprocess.run(
            ["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        cpu = model or cpu
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB RAM, {gpu}; Python "
        f"{platform.python_version()}, torch {torch.__version__}"
    )


def write_section(name: str, title: str, command: str, body: str) -> None:
    """Replace (or append) the section ``name`` of BENCHMARKS.md atomically."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"<!-- bench:{name} -->\n## {title}\n\n"
        f"- machine: {machine()}\n- command: `{command}`\n- run: {stamp}\n\n"
        f"{body.strip()}\n<!-- /bench:{name} -->"
    )
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else HEADER
    pattern = re.compile(
        rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S
    )
    text = (
        pattern.sub(lambda _: section, text)
        if pattern.search(text)
        else (text.rstrip() + "\n\n" + section + "\n")
    )
    fd, tmp = tempfile.mkstemp(dir=BENCHMARKS.parent, prefix=".BENCHMARKS.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, BENCHMARKS)


def table(columns: list[str], rows: list[list[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
