"""Node calibration (paper §3.1): score each expert on the reference prompts, as graph edges.

For every expert, the reference prompts it has no scores for yet are generated N times with
fixed seeds and scored; each prompt's mean per metric becomes a calibration edge (and the
first seed's image a small sample PNG, :mod:`graph.samples`), written as soon as the expert
finishes, so an interrupted run resumes where it stopped. An expert that fails is recorded
in the report and the run goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from graph.records import BaseFamily, Calibration, Expert, ReferencePrompt
from tools.calibration.errors import CalibrationError
from tools.calibration.executor import Executor
from tools.calibration.tasks import ExpertResult, ExpertTask

logger = logging.getLogger(__name__)


@dataclass
class CalibrationReport:
    """What a run did; ``demo`` when tiny random weights made or scored the images."""

    calibrated: dict[str, int] = field(default_factory=dict)  # expert id -> prompts scored
    skipped: dict[str, int] = field(default_factory=dict)  # expert id -> prompts already scored
    failures: dict[str, str] = field(default_factory=dict)  # expert id -> error
    unusable: set[str] = field(default_factory=set)  # failed by their own fault (see below)
    images: int = 0
    seconds: float = 0.0
    demo: bool = False

    @property
    def exit_code(self) -> int:
        """0 when nothing failed; 2 (a user error) when every failure is an expert that
        cannot be used as given (wrong family, no file, does not fit the base); else 1."""
        if not self.failures:
            return 0
        return 2 if set(self.failures) <= self.unusable else 1

    def as_dict(self) -> dict:
        return {
            "calibrated": self.calibrated,
            "skipped": self.skipped,
            "failures": self.failures,
            "unusable": sorted(self.unusable),
            "images": self.images,
            "seconds": round(self.seconds, 3),
            "demo": self.demo,
        }


ProgressCallback = Callable[[ExpertResult, int, int], None]  # result, done, total


def calibrate(
    graph,
    experts: Sequence[Expert],
    executor: Executor,
    base: BaseFamily,
    reference_prompts: Sequence[str] | None = None,
    progress: ProgressCallback | None = None,
) -> CalibrationReport:
    """Calibrate ``experts`` of family ``base`` on ``reference_prompts`` in ``graph``.

    ``graph`` is a :class:`graph.universal.UniversalGraph`; ``reference_prompts`` are
    added to it when given (default: every reference prompt already in the graph).
    """
    refs = _reference_prompts(graph, reference_prompts)
    report = CalibrationReport()
    tasks: list[ExpertTask] = []
    for expert in experts:
        done = graph.store.calibrated_pairs(expert.id)
        pending = [(r.id, r.text) for r in refs if r.id not in done]
        if len(pending) < len(refs):
            report.skipped[expert.id] = len(refs) - len(pending)
        if not pending:
            continue
        try:
            tasks.append(ExpertTask.for_expert(expert, pending, base))
        except CalibrationError as exc:
            report.failures[expert.id] = str(exc)
            report.unusable.add(expert.id)
            logger.warning("%s", exc)
    if tasks:
        report.demo = executor.demo
    for done_count, result in enumerate(executor.run(tasks), 1):
        _record(graph, result, report)
        if progress is not None:
            progress(result, done_count, len(tasks))
    return report


def _reference_prompts(graph, texts: Sequence[str] | None) -> list[ReferencePrompt]:
    from graph.universal import reference_prompt_id

    if texts is None:
        refs = graph.store.reference_prompts()
    else:
        graph.add_reference_prompts(texts)
        by_id = {r.id: r for r in graph.store.reference_prompts()}
        refs = [by_id[reference_prompt_id(t)] for t in dict.fromkeys(t.strip() for t in texts)]
    if not refs:
        raise CalibrationError(
            "no reference prompts: pick some with `diffgraph ref-prompts pick --from FILE` "
            "or pass --prompts FILE"
        )
    return refs


def _record(graph, result: ExpertResult, report: CalibrationReport) -> None:
    report.seconds += result.seconds
    if result.error is not None:
        report.failures[result.expert_id] = result.error
        if result.unusable:
            report.unusable.add(result.expert_id)
        return
    graph.set_calibrations(
        Calibration(expert_id=result.expert_id, ref_id=ref_id, scores=scores)
        for ref_id, scores in result.scores.items()
    )
    graph.set_samples(result.expert_id, result.samples)
    report.calibrated[result.expert_id] = len(result.scores)
    report.images += result.images
    logger.info(
        "calibrated %s on %d prompts (%.1f s)", result.expert_id, len(result.scores), result.seconds
    )
