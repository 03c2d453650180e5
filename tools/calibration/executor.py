"""Where calibration tasks run: in this process, or on Ray actors (one per GPU/worker).

Both take :class:`ExpertTask` s (one per expert, so its weights are applied once) and yield
:class:`ExpertResult` s as they finish. Ray is optional (``pip install -e .[ray]``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Protocol

from tools.calibration.errors import CalibrationError
from tools.calibration.tasks import ExpertResult, ExpertTask
from tools.calibration.worker import Worker, WorkerSpec

logger = logging.getLogger(__name__)


class Executor(Protocol):
    demo: bool

    def run(self, tasks: Iterable[ExpertTask]) -> Iterator[ExpertResult]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Runs tasks one after another on one worker in this process (built on first use)."""

    def __init__(self, spec: WorkerSpec, worker: Worker | None = None) -> None:
        self.spec = spec
        self._worker = worker

    @property
    def worker(self) -> Worker:
        if self._worker is None:
            self._worker = Worker(self.spec)
        return self._worker

    @property
    def demo(self) -> bool:
        return self.worker.demo

    def run(self, tasks: Iterable[ExpertTask]) -> Iterator[ExpertResult]:
        for task in tasks:
            yield self.worker.run(task)

    def close(self) -> None:
        self._worker = None


class RayExecutor:
    """One actor per worker, each holding a loaded pipeline; tasks go to free actors.

    ``address``: a running cluster (``ray.init(address=...)``); None starts Ray locally.
    ``workers``: number of actors (default: the cluster's GPUs, else 1). Each actor asks
    for one GPU when the cluster has GPUs.
    """

    def __init__(
        self,
        spec: WorkerSpec,
        workers: int | None = None,
        address: str | None = None,
        cpus_per_worker: float = 1.0,
    ) -> None:
        try:
            import ray
        except ImportError as exc:
            raise CalibrationError(
                "the Ray executor needs ray: pip install -e '.[ray]' (or use --executor local)"
            ) from exc
        self._ray = ray
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        count = workers or max(gpus, 1)
        options = {"num_gpus": 1} if gpus else {"num_cpus": cpus_per_worker}
        if not gpus and spec.threads is None:  # one torch thread per reserved CPU
            spec = spec.model_copy(update={"threads": max(1, int(cpus_per_worker))})
        actor = ray.remote(**options)(_RayWorker)
        self._actors = [actor.remote(spec) for _ in range(count)]
        self._demo: bool | None = None
        logger.info("started %d Ray calibration workers (%s)", count, options)

    @property
    def demo(self) -> bool:
        if self._demo is None:
            self._demo = self._ray.get(self._actors[0].demo.remote())
        return self._demo

    def run(self, tasks: Iterable[ExpertTask]) -> Iterator[ExpertResult]:
        ray = self._ray
        pending = iter(tasks)
        running: dict = {}
        for actor in self._actors:
            task = next(pending, None)
            if task is None:
                break
            running[actor.run.remote(task)] = actor
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            actor = running.pop(done[0])
            yield ray.get(done[0])
            task = next(pending, None)
            if task is not None:
                running[actor.run.remote(task)] = actor

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []


class _RayWorker:
    """The actor body: a :class:`Worker` living in the actor process."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.worker = Worker(spec)

    def demo(self) -> bool:
        return self.worker.demo

    def run(self, task: ExpertTask) -> ExpertResult:
        return self.worker.run(task)


def make_executor(
    name: str,
    spec: WorkerSpec,
    workers: int | None = None,
    address: str | None = None,
) -> Executor:
    """``local`` (in-process) or ``ray``."""
    if name == "local":
        return LocalExecutor(spec)
    if name == "ray":
        return RayExecutor(spec, workers=workers, address=address)
    raise CalibrationError(f"unknown executor {name!r}: expected 'local' or 'ray'")
