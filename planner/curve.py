"""The reward curve of a training run: a CSV (one row per step) and a PNG plot."""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

COLUMNS = ("step", "reward", "baseline", "loss", "kl", "grad_norm")


def read_curve(path: Path) -> list[dict[str, float]]:
    if not Path(path).is_file():
        return []
    with open(path, newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def write_curve(path: Path, rows: Sequence[dict[str, float]]) -> None:
    """Replace the CSV at ``path`` with ``rows`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: row[k] for k in COLUMNS} for row in rows)
    os.replace(tmp, path)


def plot_curve(rows: Sequence[dict[str, float]], path: Path, title: str) -> None:
    """Reward per step and the running-mean baseline, as a PNG.

    A bare ``Figure`` renders through matplotlib's Agg canvas without touching pyplot's
    global backend.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=100)
    axes = figure.add_subplot()
    steps = [r["step"] for r in rows]
    axes.plot(steps, [r["reward"] for r in rows], label="mean reward u", alpha=0.6)
    axes.plot(steps, [r["baseline"] for r in rows], label="baseline b")
    axes.set_xlabel("step")
    axes.set_ylabel("reward")
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    figure.savefig(tmp, format="png")
    os.replace(tmp, path)
