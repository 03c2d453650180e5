"""Fixtures shared by every test area."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


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
