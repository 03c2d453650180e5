"""``diffgraph generate`` as a user meets it: a bad size fails at once, sampling shows
progress."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from main import app


@pytest.fixture
def env(tmp_path, monkeypatch, tiny_sd15, tiny_sd15_files, embedder):
    from graph.config import GraphConfig
    from graph.universal import UniversalGraph
    from tests.support.tiny_experts import tiny_experts

    cat = tiny_experts(tiny_sd15, tmp_path, [("lora-cat", "peft", "red cats", [])])
    with UniversalGraph(GraphConfig(data_dir=tmp_path / "data"), embedder) as graph:
        graph.add_experts(cat)
    monkeypatch.setattr("graph.universal.Embedder", lambda *args, **kwargs: embedder)
    monkeypatch.setenv("DIFFGRAPH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DIFFGRAPH_BASE_MODEL", str(tiny_sd15_files.folder))
    monkeypatch.setenv("DIFFGRAPH_GENERATION__STEPS", "2")
    return tmp_path


def test_a_bad_size_fails_before_the_model_is_loaded(env, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the size was checked")

    monkeypatch.setattr("tools.generation.generator.load_pipeline", no_loading)
    odd = CliRunner().invoke(app, ["generate", "x", "--size", "65x64"])
    assert odd.exit_code == 2 and "multiple of 8" in odd.stderr and "64x64" in odd.stderr
    huge = CliRunner().invoke(app, ["generate", "x", "--size", "8000"])
    assert huge.exit_code == 2 and "from 16 to 4096" in huge.stderr


def test_sampling_progress_is_shown_on_a_terminal(env, monkeypatch):
    import agents.pipeline.context as context_module

    built = []
    real = context_module.build_context

    def spy(*args, **kwargs):
        built.append(real(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(context_module, "build_context", spy)
    result = CliRunner().invoke(app, ["generate", "a red cat", "--size", "64", "--out", str(env)])
    assert result.exit_code == 0, result.output
    config = built[0].generator.pipe._progress_bar_config
    assert config == {"desc": "sampling", "leave": False, "disable": None}  # None: tty only


def _one_clear_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    return result.stderr


@pytest.fixture
def no_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr("tools.generation.generator.load_pipeline", refuse)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seed", str(2**63)], "--seed"),
        (["--seed", "-1"], "--seed"),
        (["--size", "0x0"], "from 16 to 4096"),
        (["--size", "-64x64"], "expected WIDTHxHEIGHT"),
        (["--size", "100000x100000"], "from 16 to 4096"),
        (["--size", "64x"], "expected WIDTHxHEIGHT"),
        (["--size", "64x64x64"], "expected WIDTHxHEIGHT"),
    ],
)
def test_bad_seeds_and_sizes_fail_before_loading(env, no_loading, args, message):
    result = CliRunner().invoke(app, ["generate", "x", *args])
    assert message in _one_clear_line(result)


def test_bad_sizes_fail_even_without_a_base_model(env, monkeypatch, no_loading):
    monkeypatch.delenv("DIFFGRAPH_BASE_MODEL")
    result = CliRunner().invoke(app, ["generate", "x", "--size", "0x0"])
    assert "from 16 to 4096" in _one_clear_line(result)


def test_an_out_that_is_a_file_fails_before_loading(env, no_loading):
    (env / "file").write_text("")
    result = CliRunner().invoke(app, ["generate", "x", "--out", str(env / "file")])
    assert "--out" in _one_clear_line(result) and "is a file" in result.stderr
    under = CliRunner().invoke(app, ["generate", "x", "--out", str(env / "file" / "sub")])
    assert "is a file, not a folder" in _one_clear_line(under)


def test_a_read_only_out_fails_before_loading(env, no_loading, monkeypatch):
    import os

    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: real(p, mode) and "ro" not in str(p))
    (env / "ro").mkdir()
    result = CliRunner().invoke(app, ["generate", "x", "--out", str(env / "ro" / "out")])
    assert "is read-only" in _one_clear_line(result)


def test_a_cuda_device_on_a_cpu_torch_fails_before_loading(env, no_loading, monkeypatch):
    import torch

    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setenv("DIFFGRAPH_DEVICE", "cuda")
    result = CliRunner().invoke(app, ["generate", "x"])
    assert "device 'cuda' is not available" in _one_clear_line(result)
    assert "DIFFGRAPH_DEVICE" in result.stderr


def test_a_full_disk_while_writing_images_leaves_nothing(env, monkeypatch):
    import errno

    from PIL import Image

    def full(self, fp, *args, **kwargs):
        with open(fp, "wb") as handle:
            handle.write(b"\x89PNG half an image")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    out = env / "out"
    result = CliRunner().invoke(app, ["generate", "a red cat", "--size", "64", "--out", str(out)])
    assert "No space left on device" in _one_clear_line(result)
    assert list(out.iterdir()) == []
