"""Calibration's sample images beside the graph: written atomically, replaced, one file per
(expert, reference prompt) whatever the ids hold, and gone with their expert."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from graph.errors import GraphError
from graph.samples import FOLDER, sample_path
from graph.universal import UniversalGraph
from tests.graph.helpers import expert, vec


def png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), colour).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def graph(graph_config):
    with UniversalGraph(graph_config) as g:
        g.add_experts([expert("a"), expert("b")], np.stack([vec(1), vec(2)]))
        yield g


def test_samples_are_written_replaced_and_read_in_order(graph, graph_config):
    graph.set_samples("a", {"ref-1": png((255, 0, 0)), "ref-2": png((0, 255, 0))})
    graph.set_samples("a", {"ref-1": png((0, 0, 255))})  # scored again: replaced
    found = graph.samples("a", ["ref-2", "ref-1", "ref-3"])
    assert list(found) == ["ref-2", "ref-1"]  # the asked order; ref-3 has none
    with Image.open(found["ref-1"]) as image:
        assert image.getpixel((0, 0)) == (0, 0, 255)
    assert graph.samples("b", ["ref-1"]) == {}
    folder = graph_config.data_dir / FOLDER
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_odd_ids_get_distinct_safe_file_names(tmp_path):
    ids = ["hf-org/model@abc", "hf-org_model@abc", "local-x:1+2", "../../etc"]
    paths = {sample_path(tmp_path, i, "ref-1") for i in ids}
    assert len(paths) == len(ids)
    for path in paths:
        assert path.resolve().is_relative_to((tmp_path / FOLDER).resolve())
        assert path.parent.parent == tmp_path / FOLDER
    assert sample_path(tmp_path, "a", "ref/1") != sample_path(tmp_path, "a", "ref_1")


def test_only_png_bytes_are_kept(graph):
    with pytest.raises(GraphError, match="not a PNG"):
        graph.set_samples("a", {"ref-1": b"<svg onload=alert(1)>"})
    assert graph.samples("a", ["ref-1"]) == {}


def test_removing_an_expert_removes_its_samples(graph, graph_config):
    graph.set_samples("a", {"ref-1": png((1, 2, 3))})
    graph.set_samples("b", {"ref-1": png((4, 5, 6))})
    graph.remove("a")
    assert graph.samples("a", ["ref-1"]) == {}
    assert list(graph.samples("b", ["ref-1"])) == ["ref-1"]
    graph.remove("b")  # nothing left of the folder layout but the root
    assert list((graph_config.data_dir / FOLDER).iterdir()) == []
