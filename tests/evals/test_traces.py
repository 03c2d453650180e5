"""The trace evaluator's figures on a hand-made trace set equal hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from evals.traces import evaluate
from graph.records import BaseFamily, Expert, ExpertKind
from graph.store import GraphStore
from main import app
from tools.tracing import TraceError

T0 = "2026-11-25T10:00:00+00:00"


def ev(run, seq, event, agent="selection", ts=T0, **fields):
    return {"run_id": run, "agent": agent, "seq": seq, "event": event, "ts": ts, **fields}


def llm(attempt, prompt_tokens, completion_tokens, valid=True):
    return {
        "llm": {
            "model": "m",
            "attempt": attempt,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "valid": valid,
        }
    }


def selection(prompt, ckpts, loras, family="sd15", base_model=False):
    return {
        "prompt": prompt,
        "family": family,
        "base_model": base_model,
        "checkpoints": [{"id": i, "kind": "ckpt"} for i in ckpts],
        "loras": [{"id": i, "kind": "peft"} for i in loras],
    }


SETTINGS = {"settings": {"max_checkpoints": 1, "max_loras": 2}}
RUN_A = [  # 2 LLM calls (one a schema retry), tokens 100+20 / 120+30, 2 nodes, 1 s long
    ev("a", 0, "run_start", inputs={"prompt": "red hair"}, data=SETTINGS),
    ev("a", 1, "llm_call", node="analyse", **llm(1, 100, 20, valid=False)),
    ev("a", 2, "llm_call", node="analyse", **llm(2, 120, 30)),
    ev("a", 3, "node", node="analyse", latency_ms=40.0),
    ev("a", 4, "node", node="filter", latency_ms=10.0),
    ev(
        "a",
        5,
        "run_end",
        ts="2026-11-25T10:00:01+00:00",
        outputs=selection("red hair", ["ck"], ["red", "red2"]),
    ),
]
RUN_B = [  # no LLM, a fallback, selects a deprecated and an unknown expert, 3 s long
    ev("b", 0, "run_start", inputs={"prompt": "castle"}, data=SETTINGS),
    ev("b", 1, "fallback", node="analyse", error="no LLM"),
    ev("b", 2, "node", node="analyse", latency_ms=20.0),
    ev(
        "b",
        3,
        "run_end",
        ts="2026-11-25T10:00:03+00:00",
        outputs=selection("castle", [], ["old", "ghost", "xl"]),
    ),
]
RUN_C = [  # a crawl run that failed
    ev("c", 0, "run_start", agent="crawl"),
    ev("c", 1, "node", agent="crawl", node="discover", latency_ms=100.0),
    ev("c", 2, "error", agent="crawl", node="download", error="boom"),
]


@pytest.fixture
def traces(tmp_path):
    folder = tmp_path / "traces"
    (folder / "selection").mkdir(parents=True)
    (folder / "crawl").mkdir()
    (folder / "selection" / "a.jsonl").write_text("\n".join(json.dumps(e) for e in RUN_A))
    (folder / "selection" / "b.jsonl").write_text("\n".join(json.dumps(e) for e in RUN_B))
    (folder / "crawl" / "c.jsonl").write_text("\n".join(json.dumps(e) for e in RUN_C))
    return folder


@pytest.fixture
def store(tmp_path):
    with GraphStore(tmp_path / "graph") as s:

        def x(i):
            return np.eye(4, dtype=np.float32)[i]

        s.add_experts(
            [
                (Expert(id="ck", kind=ExpertKind.CKPT, base=BaseFamily.SD15, name="ck"), x(0)),
                (Expert(id="red", kind=ExpertKind.PEFT, base=BaseFamily.SD15, name="r"), x(1)),
                (Expert(id="red2", kind=ExpertKind.PEFT, base=BaseFamily.SD15, name="r"), x(1)),
                (Expert(id="old", kind=ExpertKind.PEFT, base=BaseFamily.SD15, name="o"), x(2)),
                (Expert(id="xl", kind=ExpertKind.PEFT, base=BaseFamily.SDXL, name="x"), x(3)),
            ]
        )
        s.deprecate("old")
        yield s


def test_figures_equal_hand_computed_values(traces, store):
    gold = {"red hair": ["ckpt", "red-hair", "eyes"], "castle": ["castle"]}
    groups = {"ck": "ckpt", "red": "red-hair", "red2": "red-hair"}
    report = evaluate([traces], gold, groups, store)
    assert (report.files, report.runs) == (3, 3)

    crawl, sel = report.agents
    assert (crawl.agent, crawl.runs, crawl.completed, crawl.error_rate) == ("crawl", 1, 0, 1.0)
    assert sel.runs == 2 and sel.completed == 2
    assert sel.llm_calls_per_run == 1.0  # (2 + 0) / 2
    assert sel.prompt_tokens_per_run == 110.0 and sel.completion_tokens_per_run == 25.0
    assert sel.fallback_rate == 0.5 and sel.error_rate == 0.0
    assert sel.schema_retry_rate == 1.0  # one retry for one decision
    assert sel.latency_ms_mean == 2000.0

    nodes = {(n.agent, n.node): n for n in report.nodes}
    assert nodes[("selection", "analyse")].count == 2
    assert nodes[("selection", "analyse")].latency_ms_mean == 30.0
    assert nodes[("selection", "analyse")].latency_ms_p50 == 30.0
    assert nodes[("selection", "analyse")].latency_ms_p95 == pytest.approx(39.0)

    a, b = report.selection
    # run a: ck right, red right, red2 redundant -> precision 2/3, recall 2/3, redundancy 1/3
    assert (a.precision, a.recall, a.redundancy) == pytest.approx((2 / 3, 2 / 3, 1 / 3))
    assert (b.precision, b.recall, b.redundancy) == (0.0, 0.0, 0.0)
    assert report.selection_means["precision"] == pytest.approx(1 / 3)

    rules = sorted((v.run_id, v.rule) for v in report.violations)
    assert rules == [  # run a is within bounds: 1 checkpoint, 2 LoRAs
        ("b", "active expert"),
        ("b", "at least one checkpoint"),
        ("b", "base family"),
        ("b", "count bound"),
        ("b", "selected id exists"),
    ]
    assert report.invariants_checked == 2


def test_judge_scores_are_normalised(traces):
    report = evaluate([traces], judge=lambda prompt, sel: (5 if prompt == "red hair" else 2, "ok"))
    assert [j.normalised for j in report.judge] == [1.0, 0.25]
    assert report.judge_mean == 0.625


def test_cli_json_and_bad_input(traces, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFGRAPH_DATA_DIR", str(tmp_path / "nodata"))
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "traces", str(traces), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["runs"] == 3
    (tmp_path / "bad.jsonl").write_text('{"run_id": "x"}\n')
    result = runner.invoke(app, ["eval", "traces", str(tmp_path / "bad.jsonl")])
    assert result.exit_code == 2 and "is not a trace event" in result.stderr
    with pytest.raises(TraceError, match="does not exist"):
        evaluate([tmp_path / "missing"])
