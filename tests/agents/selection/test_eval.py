"""Smoke test of the selection benchmark (evals/selection.py) and its exact scoring."""

from __future__ import annotations

import pytest

from evals.selection import load_dataset, report, run, score

GROUPS = {"a1": "a", "a2": "a", "b": "b", "c": "c"}


def test_score_by_skill_group():
    assert score(["a1", "a2", "c"], {"a", "b"}, GROUPS) == {
        "precision": pytest.approx(1 / 3),
        "recall": 0.5,
        "redundancy": pytest.approx(1 / 3),
        "selected": 3,
    }
    assert score([], {"a"}, GROUPS) == {
        "precision": 1.0,
        "recall": 0.0,
        "redundancy": 0.0,
        "selected": 0,
    }


@pytest.mark.parametrize("dataset", ["traps", "demo-platform"])
def test_benchmark_runs_every_mode(embedder, dataset):
    experts, groups, items = load_dataset(dataset)
    assert {g for item in items for g in item.gold} <= set(groups.values())  # labels resolve
    results = run(experts, groups, items[:2], embedder=embedder)
    assert set(results) == {"retrieval", "no-llm", "llm-scripted"}
    oracle = results["llm-scripted"]["mean"]
    assert oracle["precision"] == 1.0 and oracle["llm_requests"] == 2.0
    assert results["no-llm"]["mean"]["llm_requests"] == 0.0
    assert results["retrieval"]["mean"]["selected"] >= results["no-llm"]["mean"]["selected"]
    assert all(r["mode"] == "llm" for r in results["llm-scripted"]["rows"])
    text = report({dataset: (2, results)})
    assert "| embedding retrieval, no filtering (baseline) |" in text and "DEMO" in text
