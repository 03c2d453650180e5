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
