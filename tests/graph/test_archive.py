"""Export / import of a whole graph; malformed archives change nothing."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from graph.archive import export_archive, import_archive, read_archive
from graph.errors import ArchiveError
from graph.records import Calibration, ReferencePrompt
from graph.store import GraphStore
from tests.graph.helpers import expert, vec


@pytest.fixture
def populated(tmp_path):
    path = tmp_path / "src"
    with GraphStore(path) as s:
        s.add_reference_prompts(
            (ReferencePrompt(id=f"r{i}", text=f"p{i}"), vec(100 + i)) for i in range(3)
        )
        s.add_experts([(expert("a"), vec(1)), (expert("b", kind="ckpt"), vec(2))])
        s.add_version("a", expert("a2"), vec(3))
        s.set_calibrations(
            [
                Calibration(expert_id="a", ref_id="r0", scores={"clip_score": 0.1}),
                Calibration(
                    expert_id="a2", ref_id="r2", scores={"aesthetic": 5.5, "clip_score": 0.3}
                ),
            ]
        )
    return path


def test_round_trip(populated, tmp_path):
    with GraphStore(populated) as s:
        export_archive(s, tmp_path / "g.zip")
        before, records = s.arrays(), s.experts()
    import_archive(tmp_path / "g.zip", tmp_path / "dst")
    with GraphStore(tmp_path / "dst") as d:
        after = d.arrays()
        assert d.experts() == records
        assert d.history("a2")[0].id == "a"
    assert after.expert_ids == before.expert_ids and after.ref_ids == before.ref_ids
    np.testing.assert_array_equal(after.expert_x, before.expert_x)
    np.testing.assert_array_equal(after.ref_x, before.ref_x)
    np.testing.assert_array_equal(after.edge_index, before.edge_index)
    np.testing.assert_array_equal(after.edge_attr, before.edge_attr)
    assert after.metric_names == before.metric_names


def _rewrite(src, dst, **replace):
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for name in a.namelist():
            if name in replace:
                if replace[name] is not None:
                    b.writestr(name, replace[name])
            else:
                b.writestr(name, a.read(name))


def _npz(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"refs.jsonl": None}, "lacks \\['refs.jsonl'\\]"),
        ({"manifest.json": json.dumps({"format": "other"})}, "expected 'diffgraph-graph-archive'"),
        (
            {"experts.jsonl": '{"id": "x", "kind": "lora", "base": "sd15", "name": "x"}'},
            "invalid record",
        ),
        (
            {
                "graph.npz": _npz(
                    expert_x=np.zeros((1, 8)),
                    ref_x=np.zeros((3, 8)),
                    edge_index=np.zeros((2, 0), int),
                    edge_attr=np.zeros((0, 2)),
                )
            },
            "expert_x has shape \\(1,\\), expected \\(3,\\)",
        ),
        ({"graph.npz": b"garbage"}, "malformed"),
    ],
)
def test_malformed_archive_changes_nothing(populated, tmp_path, change, message):
    with GraphStore(populated) as s:
        export_archive(s, tmp_path / "good.zip")
        revision = s.revision
    _rewrite(tmp_path / "good.zip", tmp_path / "bad.zip", **change)
    with pytest.raises(ArchiveError, match=message):
        import_archive(tmp_path / "bad.zip", populated)
    with GraphStore(populated) as s:
        assert s.revision == revision and len(s) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip", "good.zip", "src"]


def test_not_a_zip(tmp_path):
    (tmp_path / "x.zip").write_text("hello")
    with pytest.raises(ArchiveError, match="malformed"):
        read_archive(tmp_path / "x.zip")
    with pytest.raises(ArchiveError, match="does not exist"):
        read_archive(tmp_path / "missing.zip")
