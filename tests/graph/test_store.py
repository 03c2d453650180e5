"""GraphStore: incremental writes, persistence, version history and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from graph.errors import (
    DuplicateIdError,
    EmbeddingShapeError,
    GraphError,
    UnknownExpertError,
    UnreadableRecordError,
)
from graph.records import Calibration, ExpertKind, ExpertStatus, ReferencePrompt
from graph.store import GraphStore
from tests.graph.helpers import DIM, expert, vec


@pytest.fixture
def store(tmp_path):
    with GraphStore(tmp_path / "g") as s:
        yield s


def _refs(store: GraphStore, n: int = 3) -> None:
    store.add_reference_prompts(
        (ReferencePrompt(id=f"r{i}", text=f"prompt {i}"), vec(100 + i)) for i in range(n)
    )


def test_add_and_read_back_records_and_features(store):
    store.add_experts([(expert("a"), vec(1)), (expert("b", kind="ckpt"), vec(2))])
    assert len(store) == 2
    assert store.expert("b").kind is ExpertKind.CKPT
    assert [e.id for e in store.experts(kind=ExpertKind.PEFT)] == ["a"]
    np.testing.assert_array_equal(store.embeddings(["b", "a"]), np.stack([vec(2), vec(1)]))
    assert store.embedding_dim == DIM


def test_reopen_gives_identical_arrays(tmp_path):
    with GraphStore(tmp_path / "g") as s:
        s.add_experts([(expert("a"), vec(1)), (expert("b"), vec(2))])
        _refs(s)
        s.set_calibrations([Calibration(expert_id="a", ref_id="r1", scores={"clip_score": 0.5})])
        before = s.arrays()
    with GraphStore(tmp_path / "g") as s:
        after = s.arrays()
    assert after.expert_ids == before.expert_ids
    np.testing.assert_array_equal(after.expert_x, before.expert_x)
    np.testing.assert_array_equal(after.edge_index, before.edge_index)
    np.testing.assert_array_equal(after.edge_attr, before.edge_attr)


def test_duplicate_id_is_refused_and_nothing_changes(store):
    store.add_expert(expert("a"), vec(1))
    revision = store.revision
    with pytest.raises(DuplicateIdError, match="'a' is already in the graph"):
        store.add_experts([(expert("z"), vec(3)), (expert("a"), vec(2))])
    assert store.revision == revision
    assert [e.id for e in store.experts()] == ["a"]
    np.testing.assert_array_equal(store.embeddings(["a"]), vec(1)[None])


def test_wrong_embedding_size_names_expected_and_got(store):
    store.add_expert(expert("a"), vec(1))
    with pytest.raises(EmbeddingShapeError, match="has 5 dimensions, the graph expects 8"):
        store.add_expert(expert("b"), vec(2, dim=5))
    assert not store.has_expert("b")


def test_nan_embedding_is_refused(store):
    bad = vec(1)
    bad[0] = np.nan
    with pytest.raises(EmbeddingShapeError, match="NaN"):
        store.add_expert(expert("a"), bad)


def test_infinite_embeddings_are_refused_on_every_write(store):
    store.add_expert(expert("a"), vec(1))
    bad = vec(2)
    bad[3] = np.inf
    with pytest.raises(EmbeddingShapeError, match="NaN or infinite"):
        store.add_reference_prompts([(ReferencePrompt(id="r", text="a cat"), bad)])
    with pytest.raises(EmbeddingShapeError, match="NaN or infinite"):
        store.update_expert(expert("a"), bad)
    with pytest.raises(EmbeddingShapeError, match="NaN or infinite"):
        store.add_version("a", expert("a2"), bad)
    np.testing.assert_array_equal(store.embeddings(["a"]), vec(1)[None])


def test_a_damaged_record_is_skipped_when_listing_and_named_when_asked(store, caplog):
    _refs(store)
    store.add_experts([(expert("a"), vec(1)), (expert("b"), vec(2))])
    store._db.execute("UPDATE experts SET record = '{' WHERE id = 'a'")
    store._db.execute("UPDATE refs SET text = '' WHERE id = 'r1'")
    assert [e.id for e in store.experts()] == ["b"]
    assert [e.id for e in store.experts()] == ["b"]
    assert [r.id for r in store.reference_prompts()] == ["r0", "r2"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and "'a' is damaged" in warnings[0]  # once per record
    with pytest.raises(UnreadableRecordError, match="graph remove a"):
        store.expert("a")
    with pytest.raises(UnreadableRecordError):
        store.experts(ids=["b", "a"])
    assert [e.id for e in store.experts(ids=["a", "b"], skip_unreadable=True)] == ["b"]
    store.remove("a")
    assert store.arrays().expert_ids == ["b"]


def test_new_version_deprecates_old_and_keeps_history(store):
    store.add_expert(expert("m-v1"), vec(1))
    new = store.add_version("m-v1", expert("m-v2"), vec(2))
    old = store.expert("m-v1")
    assert old.status is ExpertStatus.DEPRECATED and old.superseded_by == "m-v2"
    assert new.supersedes == "m-v1" and new.lineage == "m-v1"
    assert [e.id for e in store.history("m-v2")] == ["m-v1", "m-v2"]
    assert [e.id for e in store.experts(status=ExpertStatus.ACTIVE)] == ["m-v2"]
    store.add_version("m-v2", expert("m-v3"), vec(3))
    assert [e.id for e in store.history("m-v1")] == ["m-v1", "m-v2", "m-v3"]


def test_version_must_keep_kind_and_family(store):
    store.add_expert(expert("m-v1"), vec(1))
    with pytest.raises(GraphError, match="must keep kind and base family"):
        store.add_version("m-v1", expert("m-v2", kind="ckpt"), vec(2))


def test_deprecate_and_remove(store):
    _refs(store)
    store.add_experts([(expert("a"), vec(1)), (expert("b"), vec(2))])
    store.set_calibrations([Calibration(expert_id="a", ref_id="r0", scores={"aesthetic": 5.0})])
    store.deprecate("b", "removed upstream")
    assert store.expert("b").status_reason == "removed upstream"
    store.remove("a")
    assert store.arrays().expert_ids == ["b"]
    assert store.arrays().edge_index.shape == (2, 0)
    with pytest.raises(UnknownExpertError, match="no expert with id 'a'"):
        store.remove("a")


def test_calibrations_merge_per_metric_last_write_wins(store):
    _refs(store)
    store.add_experts([(expert("a"), vec(1)), (expert("b"), vec(2))])
    store.set_calibrations(
        [
            Calibration(expert_id="a", ref_id="r0", scores={"clip_score": 0.1, "aesthetic": 4.0}),
            Calibration(expert_id="b", ref_id="r2", scores={"clip_score": 0.3}),
        ]
    )
    store.set_calibrations([Calibration(expert_id="a", ref_id="r0", scores={"clip_score": 0.2})])
    arrays = store.arrays()
    assert arrays.metric_names == ["aesthetic", "clip_score"]
    np.testing.assert_array_equal(arrays.edge_index, [[0, 1], [0, 2]])
    np.testing.assert_allclose(arrays.edge_attr, [[4.0, 0.2], [np.nan, 0.3]])
    assert store.calibrated_pairs("a") == {"r0"}


def test_calibration_for_unknown_nodes_is_refused(store):
    _refs(store)
    store.add_expert(expert("a"), vec(1))
    with pytest.raises(UnknownExpertError):
        store.set_calibrations([Calibration(expert_id="x", ref_id="r0", scores={"s": 1.0})])
    with pytest.raises(GraphError, match="no reference prompt with id 'nope'"):
        store.set_calibrations([Calibration(expert_id="a", ref_id="nope", scores={"s": 1.0})])
    assert store.arrays().edge_index.shape == (2, 0)


def test_compact_preserves_the_graph(store):
    _refs(store)
    store.add_experts([(expert(f"e{i}"), vec(i)) for i in range(5)])
    store.update_expert(expert("e1", description="new"), vec(50))
    store.set_calibrations([Calibration(expert_id="e1", ref_id="r1", scores={"s": 1.0})])
    store.remove("e3")
    before = store.arrays()
    store.compact()
    after = store.arrays()
    assert store.stats()["segments"] == 1
    assert after.expert_ids == before.expert_ids == ["e0", "e1", "e2", "e4"]
    np.testing.assert_array_equal(after.expert_x, before.expert_x)
    np.testing.assert_array_equal(after.expert_x[1], vec(50))
    np.testing.assert_array_equal(after.edge_attr, before.edge_attr)
    assert len(list(store.segment_dir.glob("*.npz"))) == 1


def test_many_small_writes_keep_segment_count_bounded(store):
    store.add_experts([(expert(f"base{i}"), vec(i)) for i in range(200)])
    for i in range(40):
        store.add_expert(expert(f"x{i}"), vec(1000 + i))
    assert store.stats()["segments"] <= 17
    assert len(store.arrays().expert_ids) == 240
    np.testing.assert_array_equal(store.embeddings(["x39"]), vec(1039)[None])
    registered = {n for n, _ in store._registered_segments()}
    assert {p.name for p in store.segment_dir.glob("*.npz")} == registered


def test_experts_by_id_reads_the_rows_asked_for_in_that_order(store):
    store.add_experts([(expert(f"e{i}"), vec(i)) for i in range(1203)])  # > 2 chunks of 500
    wanted = [f"e{i}" for i in range(1202, -1, -2)] + ["e3"]
    assert [e.id for e in store.experts(ids=wanted)] == wanted
    assert [e.id for e in store.experts(kind=ExpertKind.PEFT, ids=["e7", "e1"])] == ["e7", "e1"]
    with pytest.raises(UnknownExpertError):
        store.experts(ids=["e1", "nope"])


def test_derived_views_are_kept_per_revision(store):
    _refs(store, 2)
    store.add_experts([(expert("a"), vec(1)), (expert("b", kind="ckpt", base="sdxl"), vec(2))])
    store.set_calibrations(
        [
            Calibration(expert_id="b", ref_id="r0", scores={"clip_score": 0.1}),
            Calibration(expert_id="a", ref_id="r1", scores={"clip_score": 0.2}),
        ]
    )
    first = store.arrays()
    assert first.expert_rows() == {"a": 0, "b": 1} and first.expert_rows() is first.expert_rows()
    assert first.partition_sizes == {("peft", "sd15", "active"): 1, ("ckpt", "sdxl", "active"): 1}
    assert first.edge_expert_ids.tolist() == ["a", "b"]  # edges in expert order
    store.deprecate("a")
    store.add_experts([(expert("c"), vec(3))])
    second = store.arrays()
    assert second is not first and second.expert_rows()["c"] == 2
    assert second.partition_sizes == {
        ("peft", "sd15", "deprecated"): 1,
        ("peft", "sd15", "active"): 1,
        ("ckpt", "sdxl", "active"): 1,
    }
