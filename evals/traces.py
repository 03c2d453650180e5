"""Evaluation of recorded agent traces.

Reads trace files written by :class:`tools.tracing.TraceWriter` and reports, per agent and
per node: latency, LLM calls and tokens per run, fallback / error / schema-retry rates;
for selection runs with gold labels, precision / recall / redundancy; and checks of the
selection invariants against the graph (ids exist, right base family, active, right kind,
counts within the bounds the run was configured with).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tools.tracing import TraceError, TraceEvent, read_trace


@dataclass
class TraceRun:
    """The events of one agent run (a file may hold several runs of one writer)."""

    path: Path
    run_id: str
    agent: str
    events: list[TraceEvent] = field(default_factory=list)

    def of(self, name: str) -> list[TraceEvent]:
        return [e for e in self.events if e.event == name]

    @property
    def end(self) -> TraceEvent | None:
        ends = self.of("run_end")
        return ends[-1] if ends else None

    @property
    def start(self) -> TraceEvent | None:
        starts = self.of("run_start")
        return starts[0] if starts else None


class NodeStats(BaseModel):
    agent: str
    node: str
    count: int
    latency_ms_mean: float | None
    latency_ms_p50: float | None
    latency_ms_p95: float | None


class AgentStats(BaseModel):
    agent: str
    runs: int
    completed: int = Field(description="runs with a run_end event and no error in it")
    llm_calls_per_run: float
    prompt_tokens_per_run: float
    completion_tokens_per_run: float
    fallback_rate: float = Field(description="share of runs with at least one fallback")
    error_rate: float = Field(description="share of runs with an error event or failed end")
    schema_retry_rate: float = Field(description="retried LLM calls per LLM decision")
    latency_ms_mean: float | None


class SelectionScore(BaseModel):
    run_id: str
    prompt: str
    selected: list[str]
    gold: list[str]
    precision: float
    recall: float
    redundancy: float


class Violation(BaseModel):
    run_id: str
    rule: str
    detail: str


class JudgeScore(BaseModel):
    run_id: str
    prompt: str
    score: int = Field(ge=1, le=5)
    normalised: float = Field(ge=0.0, le=1.0)
    reason: str


class TraceReport(BaseModel):
    files: int
    runs: int
    agents: list[AgentStats]
    nodes: list[NodeStats]
    selection: list[SelectionScore] = Field(default_factory=list)
    selection_means: dict[str, float] = Field(default_factory=dict)
    violations: list[Violation] = Field(default_factory=list)
    invariants_checked: int = 0
    judge: list[JudgeScore] = Field(default_factory=list)
    judge_mean: float | None = None


def trace_files(paths: Iterable[Path]) -> list[Path]:
    """The ``.jsonl`` files named, or found under the directories named."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(path.rglob("*.jsonl"))
        elif path.is_file():
            found.append(path)
        else:
            raise TraceError(f"trace path {path} does not exist")
    if not found:
        raise TraceError("no trace files (*.jsonl) under the given paths")
    return found


def load_runs(paths: Iterable[Path]) -> tuple[list[TraceRun], int]:
    """Runs from the trace files; a new run starts at each ``run_start`` event."""
    files = trace_files(paths)
    runs: list[TraceRun] = []
    for path in files:
        current: TraceRun | None = None
        for event in read_trace(path):
            if current is None or event.event == "run_start" or event.run_id != current.run_id:
                current = TraceRun(path, event.run_id, event.agent)
                runs.append(current)
            current.events.append(event)
    return runs, len(files)


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    low, high = int(rank), min(int(rank) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def node_stats(runs: Sequence[TraceRun]) -> list[NodeStats]:
    latencies: dict[tuple[str, str], list[float | None]] = defaultdict(list)
    for run in runs:
        for event in run.of("node"):
            latencies[(run.agent, event.node or "?")].append(event.latency_ms)
    rows = []
    for (agent, node), values in sorted(latencies.items()):
        timed = [v for v in values if v is not None]
        rows.append(
            NodeStats(
                agent=agent,
                node=node,
                count=len(values),
                latency_ms_mean=statistics.fmean(timed) if timed else None,
                latency_ms_p50=_percentile(timed, 0.5) if timed else None,
                latency_ms_p95=_percentile(timed, 0.95) if timed else None,
            )
        )
    return rows


def agent_stats(runs: Sequence[TraceRun]) -> list[AgentStats]:
    by_agent: dict[str, list[TraceRun]] = defaultdict(list)
    for run in runs:
        by_agent[run.agent].append(run)
    rows = []
    for agent, group in sorted(by_agent.items()):
        calls = [run.of("llm_call") for run in group]
        decisions = sum(1 for c in calls for e in c if e.llm is not None and e.llm.attempt == 1)
        retries = sum(1 for c in calls for e in c if e.llm is not None and e.llm.attempt > 1)
        failed = [
            bool(run.of("error")) or (run.end is not None and run.end.error is not None)
            for run in group
        ]
        run_latency = [_run_latency(run) for run in group]
        timed = [v for v in run_latency if v is not None]
        rows.append(
            AgentStats(
                agent=agent,
                runs=len(group),
                completed=sum(
                    run.end is not None and not bad for run, bad in zip(group, failed, strict=True)
                ),
                llm_calls_per_run=statistics.fmean(len(c) for c in calls),
                prompt_tokens_per_run=statistics.fmean(
                    sum(e.llm.prompt_tokens or 0 for e in c if e.llm) for c in calls
                ),
                completion_tokens_per_run=statistics.fmean(
                    sum(e.llm.completion_tokens or 0 for e in c if e.llm) for c in calls
                ),
                fallback_rate=statistics.fmean(bool(run.of("fallback")) for run in group),
                error_rate=statistics.fmean(failed),
                schema_retry_rate=retries / decisions if decisions else 0.0,
                latency_ms_mean=statistics.fmean(timed) if timed else None,
            )
        )
    return rows


def _run_latency(run: TraceRun) -> float | None:
    if run.start is None or run.end is None:
        return None
    return (run.end.ts - run.start.ts).total_seconds() * 1000


def _selection(run: TraceRun) -> dict[str, Any] | None:
    end = run.end
    if run.agent != "selection" or end is None or not isinstance(end.outputs, dict):
        return None
    return end.outputs


def _selected_ids(result: dict[str, Any]) -> list[str]:
    return [e["id"] for e in result.get("checkpoints", []) + result.get("loras", [])]


def selection_scores(
    runs: Sequence[TraceRun], gold: dict[str, list[str]], groups: dict[str, str]
) -> list[SelectionScore]:
    """Precision / recall / redundancy of selection runs whose prompt has gold labels."""
    from evals.selection import score

    rows = []
    for run in runs:
        result = _selection(run)
        if result is None or result.get("prompt") not in gold:
            continue
        labels = gold[result["prompt"]]
        selected = _selected_ids(result)
        figures = score(selected, set(labels), groups)
        rows.append(
            SelectionScore(
                run_id=run.run_id,
                prompt=result["prompt"],
                selected=selected,
                gold=labels,
                precision=figures["precision"],
                recall=figures["recall"],
                redundancy=figures["redundancy"],
            )
        )
    return rows


def check_invariants(runs: Sequence[TraceRun], store) -> tuple[list[Violation], int]:
    """Selection invariants against the graph; returns violations and runs checked."""
    from graph.records import ExpertStatus

    violations: list[Violation] = []
    checked = 0
    for run in runs:
        result = _selection(run)
        if result is None:
            continue
        checked += 1
        start = run.start
        bounds = ((start.data or {}).get("settings") or {}) if start else {}

        def fail(rule: str, detail: str, run_id: str = run.run_id) -> None:
            violations.append(Violation(run_id=run_id, rule=rule, detail=detail))

        for role, kind in (("checkpoints", "ckpt"), ("loras", "peft")):
            for item in result.get(role, []):
                expert_id = item["id"]
                if not store.has_expert(expert_id):
                    fail("selected id exists", f"{expert_id} is not in the graph")
                    continue
                expert = store.expert(expert_id)
                if expert.base.value != result.get("family"):
                    fail(
                        "base family",
                        f"{expert_id} is {expert.base.value}, run wanted {result.get('family')}",
                    )
                if expert.status is not ExpertStatus.ACTIVE:
                    fail("active expert", f"{expert_id} is {expert.status.value}")
                if expert.kind.value != kind:
                    fail("kind", f"{expert_id} is {expert.kind.value} but listed in {role}")
        n_ckpt, n_lora = len(result.get("checkpoints", [])), len(result.get("loras", []))
        if n_ckpt == 0 and not result.get("base_model"):
            fail("at least one checkpoint", "no checkpoint and no base-model fallback")
        for count, key in ((n_ckpt, "max_checkpoints"), (n_lora, "max_loras")):
            if key in bounds and count > bounds[key]:
                fail("count bound", f"{count} selected, {key} = {bounds[key]}")
    return violations, checked


def evaluate(
    paths: Iterable[Path],
    gold: dict[str, list[str]] | None = None,
    groups: dict[str, str] | None = None,
    store=None,
    judge=None,
) -> TraceReport:
    """Everything above for the traces under ``paths``.

    ``store``: a :class:`graph.store.GraphStore` for the invariant checks; ``judge``: a
    callable ``(prompt, selection_dict) -> (score 1-5, reason)`` (see :mod:`evals.judge`).
    """
    runs, files = load_runs(paths)
    report = TraceReport(
        files=files, runs=len(runs), agents=agent_stats(runs), nodes=node_stats(runs)
    )
    if gold:
        report.selection = selection_scores(runs, gold, groups or {})
        if report.selection:
            report.selection_means = {
                key: statistics.fmean(getattr(s, key) for s in report.selection)
                for key in ("precision", "recall", "redundancy")
            }
    if store is not None:
        report.violations, report.invariants_checked = check_invariants(runs, store)
    if judge is not None:
        for run in runs:
            result = _selection(run)
            if result is None:
                continue
            value, reason = judge(result["prompt"], result)
            report.judge.append(
                JudgeScore(
                    run_id=run.run_id,
                    prompt=result["prompt"],
                    score=value,
                    normalised=(value - 1) / 4,
                    reason=reason,
                )
            )
        if report.judge:
            report.judge_mean = statistics.fmean(j.normalised for j in report.judge)
    return report
