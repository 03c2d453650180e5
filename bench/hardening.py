"""Hostile inputs replayed (issue 16): how every case of the hardening corpora ends.

The corpora, replayed in this process (Typer's CliRunner for the CLI):

- malformed weight files made by tests/weights/malformed.py from a tiny kohya LoRA (broken
  headers, offsets, dtypes, shapes and data; inconsistent LoRAs), each through
  ``diffgraph weights inspect`` and ``diffgraph merge``; broken diffusers folders and a FIFO;
- a small graph with one store file damaged per case as in tests/graph/damage.py,
  through ``graph stats`` and ``graph export`` (and ``graph remove`` for the index), then
  ``graph check``, ``graph check --repair`` and ``graph check`` again;
- the hostile platform server of tests/platforms/test_hostile.py through the downloader and
  the API client.

Each run has a deadline (SIGALRM); a run past it counts as a hang.

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/hardening.py [--files 300] [--timeout 120]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evals.benchmarks_md import table, write_section

COLUMNS = [
    "corpus",
    "cases",
    "runs",
    "clear errors (exit 2, one line)",
    "accepted (usable input)",
    "other outcome",
    "tracebacks",
    "hangs",
    "runs that left files",
]

COUNTS = ("cases", "runs", "errors", "accepted", "other", "tracebacks", "hangs", "left")


class Hang(BaseException):
    """A run passed its deadline (a BaseException: no ``except Exception`` swallows it)."""


@dataclass
class Tally:
    """How the runs of one corpus ended."""

    corpus: str
    cases: int = 0
    runs: int = 0
    errors: int = 0
    accepted: int = 0
    other: int = 0
    tracebacks: int = 0
    hangs: int = 0
    left: int = 0
    odd: list[str] = field(default_factory=list)  # what the runs not counted as fine did

    def row(self) -> list[object]:
        counts = (self.errors, self.accepted, self.other, self.tracebacks, self.hangs, self.left)
        return [self.corpus, self.cases, self.runs, *counts]


class Replayer:
    """Runs hostile inputs, each with a deadline, and tallies how they end."""

    def __init__(self, timeout_s: float) -> None:
        from typer.testing import CliRunner

        from tools.cli import build_app

        self.timeout_s = timeout_s
        self.app = build_app()
        self.runner = CliRunner()

    @contextmanager
    def deadline(self) -> Iterator[None]:
        def expire(signum, frame):
            raise Hang

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, self.timeout_s)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    def invoke(self, tally: Tally, args: list[str]):
        """One CLI run; its result, or None (counted) after a hang or a traceback."""
        tally.runs += 1
        try:
            with self.deadline():
                result = self.runner.invoke(self.app, args)
        except Hang:
            tally.hangs += 1
            tally.odd.append(f"hang: {' '.join(args)}")
            return None
        crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
        if crashed or "Traceback" in result.output:
            tally.tracebacks += 1
            tally.odd.append(f"traceback: {' '.join(args[:2])}: {result.exception!r}"[:300])
            return None
        return result

    def judge(
        self,
        tally: Tally,
        args: list[str],
        watch: Iterable[Path],
        usable: bool = False,
        output: Path | None = None,
    ) -> None:
        """Run a command on a hostile input: a clear error, or exit 0 where ``usable``
        (writing only ``output``); count files left under ``watch``, then remove them."""
        watch = list(watch)
        before = files_under(watch)
        result = self.invoke(tally, args)
        if result is not None:
            lines = [line for line in result.output.splitlines() if line.strip()]
            if result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"):
                tally.errors += 1
            elif usable and result.exit_code == 0:
                tally.accepted += 1
                if output is not None:
                    before.add(output)
            else:
                tally.other += 1
                said = lines[0] if lines else "nothing"
                tally.odd.append(f"`{' '.join(args)}`: exit {result.exit_code}, {said}"[:300])
        left = files_under(watch) - before
        if left:
            tally.left += 1
            tally.odd.append(f"left {', '.join(sorted(str(p) for p in left))}: {' '.join(args)}")
        remove([*left, *([output] if output else [])])

    def call(self, tally: Tally, fn: Callable[[], object]) -> None:
        """A library call on a hostile input: a one-line DiffGraphError is a clear error."""
        from graph.errors import DiffGraphError

        tally.runs += 1
        try:
            with self.deadline():
                fn()
        except Hang:
            tally.hangs += 1
        except DiffGraphError as exc:
            if "\n" in str(exc):
                tally.other += 1
                tally.odd.append(f"a message of several lines: {exc}"[:300])
            else:
                tally.errors += 1
        except Exception as exc:
            tally.tracebacks += 1
            tally.odd.append(f"traceback: {exc!r}"[:300])
        else:
            tally.other += 1
            tally.odd.append("accepted a hostile response")


def files_under(folders: Iterable[Path]) -> set[Path]:
    return {p for folder in folders if folder.exists() for p in folder.rglob("*")}


def remove(paths: Iterable[Path]) -> None:
    for path in sorted(paths, key=lambda p: len(p.parts)):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink()


def unblock(fifo: Path) -> None:
    """Open ``fifo`` for writing and close it: a reader stuck opening it gets EOF."""
    with suppress(OSError):  # no reader is waiting
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


# -- weight files ------------------------------------------------------------------------


def weights(replay: Replayer, root: Path, count: int) -> tuple[list[Tally], int]:
    """Tallies of the malformed files and of the broken folders; the mutation kinds."""
    from tests.weights.malformed import broken_folders, malformed_files
    from tests.weights.test_malformed import USABLE
    from tools.tiny import build_tiny_sd15, make_tiny_checkpoint, make_tiny_lora

    valid, out = root / "valid", root / "out"
    valid.mkdir(parents=True)
    out.mkdir()
    pipe = build_tiny_sd15(seed=0)
    lora = make_tiny_lora(pipe, valid / "lora.safetensors", seed=1, format="kohya")
    base, folder = valid / "base.safetensors", valid / "diffusers"
    make_tiny_checkpoint(pipe, base, seed=3, format="ldm")
    make_tiny_checkpoint(pipe, folder, seed=4, format="diffusers")
    merged = out / "merged.safetensors"

    files = malformed_files(lora, root / "malformed", count, seed=16)
    inspect = Tally(f"malformed weight files ({len(files)}): `weights inspect`")
    merge = Tally(f"malformed weight files ({len(files)}): `merge` onto a tiny SD 1.5")
    watch = [root / "malformed", out, Path.cwd()]
    for name, path in files:
        usable = name in USABLE
        inspect.cases += 1
        replay.judge(inspect, ["weights", "inspect", str(path)], watch, usable)
        merge.cases += 1
        args = ["merge", "--lora", f"{path}:0.8", "--base", str(base), "-o", str(merged)]
        replay.judge(merge, args, watch, usable, merged)

    folders = broken_folders(folder, root / "folders")
    fifo = root / "folders" / "pipe.safetensors"
    os.mkfifo(fifo)  # opening it for reading blocks until a writer comes
    broken = Tally(f"broken diffusers folders ({len(folders)}) and a FIFO: `inspect`, `merge`")
    watch = [root / "folders", out, Path.cwd()]
    for _, path in [*folders, ("FIFO", fifo)]:
        broken.cases += 1
        experts = ["--ckpt", f"{path}:0.5", "--ckpt", f"{base}:0.5"]
        if path == fifo:
            experts = ["--lora", f"{path}:1", "--base", str(base)]
        for args in (["weights", "inspect", str(path)], ["merge", *experts, "-o", str(merged)]):
            timer = threading.Timer(replay.timeout_s + 1, unblock, [fifo])  # a stuck reader
            timer.start()
            replay.judge(broken, args, watch)
            timer.cancel()
    return [inspect, merge, broken], len({name for name, _ in files})


# -- graph store -------------------------------------------------------------------------


def graph_cases() -> list[tuple[str, Callable[[Path], object], bool]]:
    """(what is damaged, how to damage a data dir, whether readers may still serve it)."""
    from tests.graph.damage import (
        SEGMENT_KINDS,
        damage_graph_sqlite,
        damage_segment,
        execute,
        lose_graph_sqlite,
        seed,
    )

    def segment(kind: str, how: str):
        def damage(data: Path) -> None:
            damage_segment(data / "graph" / "segments" / seed(data)[kind], how)

        return damage

    def metadata(how: str):
        def damage(data: Path) -> None:
            seed(data)
            damage_graph_sqlite(data, how)

        return damage

    def sql(statement: str):
        def damage(data: Path) -> None:
            seed(data)
            execute(data, statement)

        return damage

    def stray(data: Path) -> None:
        seed(data)
        (data / "graph" / "segments" / "stray.npz").write_bytes(b"left by a killed write")

    hows = ("truncated", "zeroed", "random", "wrong width", "NaN rows", "missing")
    sqlite_hows = ("truncated", "zeroed", "random", "missing", "empty", "bad meta")
    return [
        *[(f"{k} segment {h}", segment(k, h), False) for k in SEGMENT_KINDS for h in hows],
        *[(f"graph.sqlite {h}", metadata(h), False) for h in sqlite_hows],
        ("graph.sqlite lost, no backup", lose_graph_sqlite, False),
        ("unregistered segment file", stray, True),
        ("expert record not JSON", sql("UPDATE experts SET record = '{x' WHERE id = 'b'"), True),
        ("expert record null", sql("UPDATE experts SET record = 'null' WHERE id = 'b'"), True),
        ("expert record a list", sql("UPDATE experts SET record = '[]' WHERE id = 'c'"), True),
        (
            "expert columns disagree",
            sql("UPDATE experts SET status = 'deprecated' WHERE id = 'a'"),
            True,
        ),
        ("reference prompt empty", sql("UPDATE refs SET text = '' WHERE id = 'r2'"), True),
    ]


def damaged_index(data: Path) -> None:
    from chromadb.api.client import SharedSystemClient

    from graph.config import GraphConfig
    from graph.universal import UniversalGraph
    from tests.graph.damage import damage_file, seed

    seed(data)
    with UniversalGraph(GraphConfig(data_dir=data)) as graph:
        graph.index.ensure_fresh()
    SharedSystemClient.clear_system_cache()  # as a new process would start
    damage_file(data / "chroma" / "chroma.sqlite3", "random")


def graph(replay: Replayer, root: Path) -> tuple[Tally, list[int]]:
    """The damaged-store tally, and how many cases ``graph check`` found, ``--repair``
    mended and ``graph check`` then passed."""
    tally = Tally("graph store, one file damaged: `graph stats`, `graph export`")
    found = [0, 0, 0]
    cases = [*graph_cases(), ("retrieval index damaged", damaged_index, True)]
    for i, (name, damage, served) in enumerate(cases):
        case = root / f"graph-{i:02d}"
        case.mkdir(parents=True)
        os.chdir(case)
        os.environ["DIFFGRAPH_DATA_DIR"] = str(case / "data")
        damage(case / "data")
        tally.cases += 1
        replay.judge(tally, ["graph", "stats"], [case], served)
        replay.judge(tally, ["graph", "export", "out.zip"], [case], served, case / "out.zip")
        if name == "retrieval index damaged":  # the readers above need no index
            replay.judge(tally, ["graph", "remove", "a"], [case])
        steps = (["graph", "check", "--json"], ["graph", "check", "--repair"], ["graph", "check"])
        for n, (args, code) in enumerate(zip(steps, (2, 0, 0), strict=True)):
            result = replay.invoke(tally, args)
            if result is not None and result.exit_code == code:
                found[n] += 1
            elif result is not None:
                tally.odd.append(f"{name}: `{' '.join(args)}` exit {result.exit_code}")
    return tally, found


# -- hostile platform server -------------------------------------------------------------


def platform(replay: Replayer, root: Path) -> Tally:
    import httpx

    from tests.platforms.test_hostile import HOME, WEIGHTS, Clock, client, drip, ok
    from tools.platforms.downloads import DownloadPolicy, download

    def get(handler, size=None, policy=None, step=None, budget=None):
        def fetch(dest: Path) -> None:
            clock = Clock(step) if step else time.monotonic
            chosen = DownloadPolicy(deadline=clock() + budget) if budget else policy
            http, _ = client(handler)
            download(http, f"{HOME}/dl/1", dest, "a.safetensors", None, size, chosen, clock)

        return fetch

    def redirect(target: str):
        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.host == "platform.example":
                return httpx.Response(302, headers={"Location": target})
            return ok(WEIGHTS)

        return handler

    def api(body: bytes | None):
        def fetch(dest: Path) -> None:
            from unittest import mock

            if body is None:  # a drip: the body's deadline
                slow, _ = client(drip)
                with mock.patch("tools.platforms.http.time.monotonic", Clock(1.0)):
                    slow.get_json(f"{HOME}/api/v1/models")
                return
            big, _ = client(lambda r: httpx.Response(200, content=body))
            big.policy = big.policy.model_copy(update={"max_body_bytes": 2**20})
            big.get_json(f"{HOME}/api/v1/models")

        return fetch

    private = [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:8080/admin",
        "http://10.0.0.7/x.safetensors",
        "http://[::1]/x",
        "http://[fe80::1]/x",
    ]
    bodies = {
        "an HTML login page": b"<!DOCTYPE html><html><form>Log in</form></html>",
        "a JSON error": b'{"error": "Unauthorized"}',
        "zeros": b"\x00" * 5000,
        "truncated weights": WEIGHTS[:-100],
    }
    loop = get(lambda r: httpx.Response(302, headers={"Location": str(r.url)}))
    endless = DownloadPolicy(min_rate_bytes_s=0, max_file_s=3600)
    cases = [  # (what, call, whether a partial file is kept for a resume)
        ("redirect loop", loop, False),
        *[(f"redirect to {t}", get(redirect(t)), False) for t in private],
        ("redirect to file://", get(redirect("file:///etc/passwd")), False),
        ("slow drip", get(drip, step=2.0), True),
        ("endless body, per-file deadline", get(drip, policy=endless, step=2.0), True),
        ("endless body, time budget", get(drip, step=0.001, budget=5.0), True),
        *[(f"body is {what}", get(lambda r, b=b: ok(b)), False) for what, b in bodies.items()],
        ("size far from the declared", get(lambda r: ok(WEIGHTS), size=900_000), False),
        ("API body of 1.2 MB", api(b"[" + b"1," * 600_000 + b"1]"), False),
        ("API body that never ends", api(None), False),
    ]
    tally = Tally("hostile platform server: downloads and API calls")
    for i, (what, fetch, resumable) in enumerate(cases):
        dest = root / f"download-{i:02d}"
        dest.mkdir(parents=True)
        tally.cases += 1
        replay.call(tally, lambda fetch=fetch, dest=dest: fetch(dest))
        kept = [p for p in dest.iterdir() if not (resumable and p.name.endswith(".part"))]
        if kept:
            tally.left += 1
            tally.odd.append(f"{what}: kept {', '.join(p.name for p in kept)}")
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300, help="malformed weight files")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per run")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    cwd, data_dir = Path.cwd(), os.environ.get("DIFFGRAPH_DATA_DIR")
    replay = Replayer(args.timeout)
    with tempfile.TemporaryDirectory(prefix="diffgraph-hardening-") as tmp:
        root = Path(tmp)
        (root / "cwd").mkdir()
        os.chdir(root / "cwd")  # files the commands leave in the working folder are seen
        try:
            (inspect, merge, broken), kinds = weights(replay, root / "weights", args.files)
            store, found = graph(replay, root / "graph")
            server = platform(replay, root / "platform")
        finally:
            os.chdir(cwd)
            if data_dir is None:
                os.environ.pop("DIFFGRAPH_DATA_DIR", None)
            else:
                os.environ["DIFFGRAPH_DATA_DIR"] = data_dir
    tallies = [inspect, merge, broken, store, server]
    total = Tally("all", *(sum(getattr(t, k) for t in tallies) for k in COUNTS))
    odd = [line for t in tallies for line in t.odd]
    body = (
        f"Every case replayed in one process (Typer's CliRunner for the CLI), each run with a "
        f"{args.timeout:g} s deadline (a run past it is a hang). A clear error is exit 2 with "
        "one `error:` line (downloads and API calls: a one-line DiffGraphError, which the CLI "
        "prints so); accepted: exit 0 on an input that is usable after all (a LoRA of odd "
        "but valid tensors is described and merged, a damaged record is skipped with a "
        "warning); runs that left files: a file where none should be (in the working folder, "
        "beside the input, at the output; a `.part` kept to resume a slow download is "
        "expected).\n\n"
        + table(COLUMNS, [t.row() for t in [*tallies, total]])
        + f"\n\nWeight files: {args.files} asked of tests/weights/malformed.py (seed 16), "
        f"{inspect.cases} made, {kinds} kinds of mutation; every one through both commands. "
        f"Graph store: {store.cases} cases (each segment kind truncated, zeroed, random, too "
        "wide, with NaN rows or missing; graph.sqlite six ways; no backup; a stray segment; "
        "five kinds of damaged record; a damaged Chroma index); its runs include three "
        f"`graph check` runs a case: the damage was found in {found[0]}/{store.cases}, "
        f"`--repair` exited 0 in {found[1]}/{store.cases} and the graph checked sound after "
        f"it in {found[2]}/{store.cases}. Platform: {server.cases} hostile responses (redirect "
        "loop, private and file:// redirect targets, endless and slow bodies, HTML, JSON, "
        "zeros and truncated weights, a wrong size, oversized and endless API bodies). "
        f"Wall time {time.perf_counter() - started:.0f} s."
    )
    if odd:
        body += f"\n\nRuns not counted as fine ({len(odd)}; the first 20):\n\n"
        body += "\n".join(f"- {line}" for line in odd[:20])
    command = "OMP_NUM_THREADS=1 nice -n 19 python bench/hardening.py " + " ".join(sys.argv[1:])
    write_section(
        "hardening", "Hardening (issue 16): hostile inputs replayed", command.strip(), body
    )
    print(body)


if __name__ == "__main__":
    main()
