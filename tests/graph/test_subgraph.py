"""Subgraph extraction returns exact tensors for the selected experts."""

from __future__ import annotations

import numpy as np
import torch

from graph.records import Calibration, ReferencePrompt
from graph.store import GraphStore
from graph.subgraph import extract_subgraph
from tests.graph.helpers import expert, vec


def test_one_hop_reference_prompts_and_edge_features(tmp_path):
    with GraphStore(tmp_path / "g") as s:
        s.add_reference_prompts(
            (ReferencePrompt(id=f"r{i}", text=f"p{i}"), vec(100 + i)) for i in range(4)
        )
        s.add_experts(
            [(expert("a"), vec(1)), (expert("b", kind="ckpt"), vec(2)), (expert("c"), vec(3))]
        )
        s.set_calibrations(
            [
                Calibration(expert_id="a", ref_id="r3", scores={"m1": 1.0, "m2": 2.0}),
                Calibration(expert_id="b", ref_id="r1", scores={"m1": 3.0}),
                Calibration(expert_id="c", ref_id="r0", scores={"m1": 9.0}),
                Calibration(expert_id="a", ref_id="r1", scores={"m2": 4.0}),
            ]
        )
        sub = extract_subgraph(s.arrays(), ["b", "a"])

    assert sub.expert_ids == ["b", "a"] and sub.expert_kinds == ["ckpt", "peft"]
    assert sub.ref_ids == ["r1", "r3"]  # r0 only touches c, r2 touches nobody
    torch.testing.assert_close(sub.expert_x, torch.from_numpy(np.stack([vec(2), vec(1)])))
    torch.testing.assert_close(sub.ref_x, torch.from_numpy(np.stack([vec(101), vec(103)])))
    edges = {
        (int(e), int(r)): (attr.tolist(), mask.tolist())
        for (e, r), attr, mask in zip(sub.edge_index.T, sub.edge_attr, sub.edge_mask, strict=True)
    }
    assert edges == {
        (1, 1): ([1.0, 2.0], [True, True]),
        (0, 0): ([3.0, 0.0], [True, False]),
        (1, 0): ([0.0, 4.0], [False, True]),
    }
    assert sub.metric_names == ["m1", "m2"]
    hetero = sub.to_hetero_data()
    assert hetero["expert", "calibrated_on", "ref"].edge_index.shape == (2, 3)


def test_experts_without_edges(tmp_path):
    with GraphStore(tmp_path / "g") as s:
        s.add_experts([(expert("a"), vec(1))])
        sub = extract_subgraph(s.arrays(), ["a"])
    assert sub.ref_ids == [] and sub.edge_index.shape == (2, 0)
    assert sub.ref_x.shape == (0, 8)
