"""DiffGraph command line: a thin entry that wires each package's commands together."""

from __future__ import annotations

from tools.cli import build_app

app = build_app()

if __name__ == "__main__":
    app()
