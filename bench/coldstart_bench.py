"""Cold start of the CLI (issue 15): wall time of fresh ``diffgraph --help`` and
``diffgraph select --no-llm`` processes over the demo catalogue, and which heavy
libraries such a process loads; warm in-process selection latency for comparison.

``python -m bench.coldstart_bench [--runs 5] [--write]``. Each cold run is a new Python
process (the OS file cache and Python's bytecode cache are warm after the first, as on a
user's machine after the first command); the MiniLM ONNX export is made once before
timing, as on first use.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "a lighthouse on a cliff at dawn, watercolor, by winslow homer, trending on artstation"
HEAVY = ("torch", "sentence_transformers", "transformers", "langgraph", "chromadb", "diffusers")
# what a `select` process imported, printed at exit by a sitecustomize-free wrapper
_PROBE = (
    "import atexit, sys, json\n"
    "atexit.register(lambda: print('MODULES ' + json.dumps(sorted(m for m in {heavy!r} "
    "if m in sys.modules)), file=sys.stderr))\n"
    "sys.argv = ['diffgraph', *{args!r}]\n"
    "from main import app\n"
    "app()\n"
)


def _entry() -> list[str]:
    script = shutil.which("diffgraph", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, str(ROOT / "main.py")]


def _time(cmd: list[str], cwd: Path, runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + system) seconds of each run. On a busy machine the CPU time is
    what the process would take on an idle one (start-up is single-threaded)."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, capture_output=True, check=True, env=_env())
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    # as on a user's machine, bytecode is cached after the first command (the warm-up)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for key in [k for k in env if k.startswith("DIFFGRAPH_LLM")]:
        env.pop(key)
    return env


def _modules(args: list[str], cwd: Path) -> list[str]:
    code = _PROBE.format(heavy=HEAVY, args=args)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, env=_env()
    )
    line = next((x for x in out.stderr.splitlines() if x.startswith("MODULES ")), "MODULES []")
    return json.loads(line.removeprefix("MODULES "))


def _graph(data_dir: Path) -> float:
    """Build the demo graph; return warm in-process select latency (median ms)."""
    from agents.selection import SelectionContext, select
    from evals.selection_needs import catalogue, load
    from graph.config import GraphConfig
    from graph.universal import UniversalGraph
    from tools.settings import SelectionSettings
    from tools.tracing import TraceWriter

    with UniversalGraph(GraphConfig(data_dir=data_dir)) as graph:
        graph.add_experts(catalogue())
        ctx = SelectionContext(
            graph, SelectionSettings(), None, tracer=TraceWriter(data_dir / "t", "selection")
        )
        select(PROMPT, ctx)  # load the model and caches once
        times = []
        for item in load()[:40]:
            start = time.perf_counter()
            select(item.prompt, ctx)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        warm_ms = _graph(cwd / ".diffgraph")
        select_args = ["select", "--no-llm", PROMPT]
        subprocess.run(_entry() + select_args, cwd=cwd, capture_output=True, env=_env())
        rows = []
        for name, cli in (("diffgraph --help", ["--help"]), ("diffgraph select", select_args)):
            walls, cpus = _time(_entry() + cli, cwd, args.runs)
            rows.append(
                [
                    f"`{name}`",
                    f"{statistics.median(cpus):.2f}",
                    f"{statistics.median(walls):.2f}",
                    f"{min(walls):.2f}",
                    ", ".join(_modules(cli, cwd)) or "none",
                ]
            )
    from evals.benchmarks_md import table

    text = (
        f"Fresh processes, {args.runs} runs each, over the demo catalogue (41 experts) in a "
        f"temporary graph; the MiniLM ONNX export and Python's bytecode cache exist (made "
        f"once, on first use). Bars: "
        f"`--help` ≤ 0.5 s, cold `select` ≤ 2 s.\n\n"
        + table(
            [
                "command",
                "CPU s (median)",
                "wall s (median)",
                "wall s (min)",
                f"loaded of {', '.join(HEAVY)}",
            ],
            rows,
        )
        + f"\n\nWarm, in one process: `select` median {warm_ms:.0f} ms over 40 labelled prompts "
        f"(no LLM). 1-minute load average {load:.1f} when the run started: with other jobs on "
        f"the cores, wall time overstates an idle machine's, and CPU time (user + system of "
        f"the process) is the closer estimate of it."
    )
    print(text)
    if args.write:
        from evals.benchmarks_md import write_section

        write_section(
            "coldstart", "Cold start (issue 15)", "python -m bench.coldstart_bench --write", text
        )


if __name__ == "__main__":
    main()
