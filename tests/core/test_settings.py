"""Settings: defaults, diffgraph.toml, DIFFGRAPH_* and the standard OpenAI variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from graph.errors import DiffGraphError
from tools.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL", "CIVITAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults():
    s = Settings()
    assert s.data_dir == Path(".diffgraph") and s.chroma_url is None
    assert not s.llm.configured and s.graph.store_dir == Path(".diffgraph/graph")


def test_toml_then_environment(monkeypatch, tmp_path):
    (tmp_path / "diffgraph.toml").write_text(
        'data_dir = "/srv/dg"\nchroma_url = "http://chroma:8000"\n'
        '[llm]\nbase_url = "http://localhost:11434/v1"\nmodel = "qwen"\n'
        "[selection]\nk1 = 4\n"
    )
    s = Settings()
    assert s.data_dir == Path("/srv/dg") and s.llm.model == "qwen" and s.selection.k1 == 4
    monkeypatch.setenv("DIFFGRAPH_SELECTION__K1", "7")
    monkeypatch.setenv("DIFFGRAPH_DATA_DIR", "/tmp/x")
    s = Settings()
    assert s.selection.k1 == 7 and s.data_dir == Path("/tmp/x") and s.llm.model == "qwen"


def test_standard_openai_and_civitai_variables(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("OPENAI_MODEL", "gpt-x")
    monkeypatch.setenv("CIVITAI_API_KEY", "civ")
    s = Settings()
    assert s.llm.configured and s.llm.base_url == "http://127.0.0.1:8080/v1"
    assert s.llm.api_key.get_secret_value() == "sk-secret"
    assert "sk-secret" not in repr(s) and s.civitai_api_key.get_secret_value() == "civ"
    monkeypatch.setenv("DIFFGRAPH_LLM__MODEL", "preferred")
    assert Settings().llm.model == "preferred"


def test_explicit_file_and_bad_values(tmp_path):
    (tmp_path / "other.toml").write_text("[selection]\nk2 = 9\n")
    assert load_settings(tmp_path / "other.toml").selection.k2 == 9
    with pytest.raises(DiffGraphError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("[selection]\nk1 = 0\n")
    with pytest.raises(DiffGraphError, match="k1"):
        load_settings(tmp_path / "bad.toml")
