"""Fixtures shared by every test area."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_configure(config):
    """One torch thread: tiny models gain nothing from more, and results stay repeatable."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def embedder():
    """The real packaged all-MiniLM-L6-v2 (loaded once per test session)."""
    from graph.embedding import Embedder

    return Embedder()


@pytest.fixture
def graph_config(tmp_path):
    """A GraphConfig whose data directory is private to the test."""
    from graph.config import GraphConfig

    return GraphConfig(data_dir=tmp_path / "data")


@pytest.fixture
def openai_server():
    """A local OpenAI-protocol server with scripted replies (tests/support/openai_server.py)."""
    from tools.llm.scripted_server import ScriptedOpenAIServer

    with ScriptedOpenAIServer() as server:
        yield server


@pytest.fixture(scope="session")
def tiny_sd15():
    """The tiny SD 1.5-architecture pipeline (tools.tiny), seed 0; shared: do not modify it."""
    from tools.tiny import build_tiny_sd15

    return build_tiny_sd15(seed=0)


@pytest.fixture(scope="session")
def tiny_sd15_files(tiny_sd15, tmp_path_factory):
    """``tiny_sd15`` saved once as a diffusers folder and an LDM single file."""
    from tools.tiny import save_tiny_sd15

    return save_tiny_sd15(tiny_sd15, tmp_path_factory.mktemp("tiny-sd15"))
