"""Fuzz: a few hundred malformed weight files through the real CLI (``weights inspect`` and
``merge``): each is the documented one-line error with exit 2, no traceback, nothing written."""

from __future__ import annotations

import os
import shutil

import pytest
from typer.testing import CliRunner

from tests.weights.malformed import broken_folders, malformed_files
from tools.cli import build_app

runner = CliRunner()
# LoRA mutations that are valid files of odd but usable tensors (inspect describes them)
USABLE = {
    "wrong input width",
    "wrong output width",
    "alpha is int8",
    "bool tensor",
    "rank changed",  # a trailing 1 on one shape: a 1x1 kernel
}


def one_line_error(args: list[str], usable: bool = False) -> str | None:
    """None when ``args`` exit 2 with one ``error:`` line (or, ``usable``, succeed), else
    what happened instead."""
    result = runner.invoke(build_app(), args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return f"{type(result.exception).__name__}: {result.exception}"
    if usable and result.exit_code == 0:
        return None
    if result.exit_code != 2 or len(lines) != 1 or not lines[0].startswith("error:"):
        return f"exit {result.exit_code}: {result.output[-300:]}"
    return None


@pytest.fixture(scope="module")
def corpus(tiny_files, tmp_path_factory):
    folder = tmp_path_factory.mktemp("malformed")
    return folder, malformed_files(tiny_files["lora_kohya"], folder / "files", 300, seed=16)


@pytest.mark.timeout(1500)  # ~400 CLI runs on a shared 2-core machine
def test_malformed_files_give_one_line_errors(corpus, tiny_files, tmp_path):
    _, files = corpus
    assert len(files) >= 300
    out = tmp_path / "merged.safetensors"
    failures, checked = [], 0
    merged: set[str] = set()
    for i, (name, path) in enumerate(files):
        commands = [["weights", "inspect", str(path)]]
        if name not in merged and (i % 10 == 0 or i >= len(files) - 13):
            merged.add(name)  # merges are slow: each kind once, the LoRA mutations included
            base = str(tiny_files["ckpt_ldm"])
            commands.append(["merge", "--lora", f"{path}:0.8", "--base", base, "-o", str(out)])
        for args in commands:
            checked += 1
            problem = one_line_error(args, usable=name in USABLE)
            if problem:
                failures.append((name, args[0], problem[:200]))
            if name not in USABLE:
                assert not out.exists() and not list(tmp_path.glob(".*.tmp"))  # nothing written
            out.unlink(missing_ok=True)
    assert failures == [], failures
    assert checked >= 300


def test_broken_diffusers_folders_and_fifos(tiny_files, tmp_path):
    base = str(tiny_files["ckpt_ldm"])
    failures = []
    for name, path in broken_folders(tiny_files["ckpt_diffusers"], tmp_path / "folders"):
        for args in (
            ["weights", "inspect", str(path)],
            ["merge", "--ckpt", f"{path}:0.5", "--ckpt", f"{base}:0.5", "-o", str(tmp_path / "o")],
        ):
            problem = one_line_error(args)
            if problem and name != "model_index bad component":
                failures.append((name, args[0], problem[:200]))
    assert failures == []
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)  # opening it for reading would block forever
    assert one_line_error(["weights", "inspect", str(fifo)]) is None
    assert one_line_error(["merge", "--lora", f"{fifo}:1", "--base", base, "-o", "o.st"]) is None
    shutil.rmtree(tmp_path / "folders")
