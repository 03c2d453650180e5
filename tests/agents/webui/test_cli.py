"""``diffgraph serve``'s options: 127.0.0.1 by default, another address only with
--allow-remote and a warning, the token (without loading a model or listening)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from typer.testing import CliRunner


@pytest.fixture
def serve(monkeypatch, tmp_path):
    """``serve(*args) -> (result, launches)`` with the pipeline, service and server stubbed."""
    pytest.importorskip("gradio")
    from tools.cli import build_app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIFFGRAPH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DIFFGRAPH_WEBUI_TOKEN", raising=False)
    closed = SimpleNamespace(close=lambda: None)
    monkeypatch.setattr(
        "agents.pipeline.context.build_context",
        lambda settings, planner: SimpleNamespace(graph=closed),
    )

    class Service:
        def __init__(self, settings, pipeline, out, config_file=None):
            pass

        def backends(self):
            return [("base model", "tiny random weights", True)]

    launches = []
    monkeypatch.setattr("agents.webui.service.WebService", Service)
    monkeypatch.setattr(
        "agents.webui.app.launch",
        lambda service, host, port, token, block: launches.append((host, port, token, block)),
    )
    app = build_app()

    def run(*args: str, env: dict | None = None):
        result = CliRunner().invoke(app, ["serve", *args], env=env)
        return result, launches

    return run


def test_local_by_default(serve):
    result, launches = serve()
    assert result.exit_code == 0, result.output
    assert launches == [("127.0.0.1", 7860, None, True)]
    assert "http://127.0.0.1:7860/" in result.stderr
    assert "tiny random weights" in result.stderr  # demo backends are named
    assert "warning" not in result.stderr


def test_another_address_needs_the_flag_and_warns(serve):
    result, launches = serve("--host", "0.0.0.0")
    assert result.exit_code != 0 and launches == []
    assert "--allow-remote" in result.stderr
    result, launches = serve("--host", "0.0.0.0", "--allow-remote", "--port", "8000")
    assert result.exit_code == 0, result.output
    assert launches == [("0.0.0.0", 8000, None, True)]
    assert "warning" in result.stderr and "without a token" in result.stderr


def test_token(serve):
    result, launches = serve("--token", "short")
    assert result.exit_code != 0 and launches == [] and "too short" in result.stderr
    result, launches = serve(env={"DIFFGRAPH_WEBUI_TOKEN": "long-enough-token"})
    assert result.exit_code == 0, result.output
    assert launches == [("127.0.0.1", 7860, "long-enough-token", True)]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.2", "::1"])
def test_loopback_needs_no_flag(serve, host):
    result, launches = serve("--host", host)
    assert result.exit_code == 0 and launches[-1][0] == host
