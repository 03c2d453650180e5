"""The agent's tools: expert sources over the platform clients, and the calibrator port.

A source lists upstream models as typed records, tells whether one still exists, and
fetches a version's weight file. Nothing here takes instructions from crawled text: the
LLM is only ever asked for a :class:`~agents.construction.schemas.SkillSummary`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from graph.records import BaseFamily, Calibration, Expert, ExpertKind
from tools.platforms.civitai import CivitaiClient
from tools.platforms.downloads import DownloadPolicy, download
from tools.platforms.errors import HashMismatchError, NotFoundError, PlatformError
from tools.platforms.http import HttpClient
from tools.platforms.huggingface import HuggingFaceClient
from tools.platforms.local import LocalScanner
from tools.platforms.records import DownloadedFile, PlatformFile, PlatformModel, Skipped

if TYPE_CHECKING:
    from graph.universal import UniversalGraph
    from tools.calibration.executor import Executor

log = logging.getLogger(__name__)

_KINDS = {"lora": ExpertKind.PEFT, "checkpoint": ExpertKind.CKPT}


def kinds_of(types: Sequence[str]) -> set[ExpertKind]:
    return {_KINDS[t] for t in types}


class ExpertSource(Protocol):
    """Where experts come from (one platform)."""

    platform: str
    demo: bool
    notes: list[str]  # what the last listing wants the report to say

    def iter_models(
        self, base: BaseFamily, types: Sequence[str]
    ) -> Iterator[PlatformModel | Skipped]:
        """Upstream models (newest version first); raises PlatformError when the listing breaks."""

    def exists(self, model_id: str) -> bool:
        """False when the model was removed upstream."""

    def covers(self, expert: Expert) -> bool:
        """True when this listing is where ``expert`` would appear (a local crawl covers
        only the files under its folders), so that its absence means removal."""

    def fetch(self, file: PlatformFile, dest_dir: Path, policy: DownloadPolicy) -> DownloadedFile:
        """The verified weight file on local disk."""

    def close(self) -> None: ...


class Calibrator(Protocol):
    """Calibrates one registered expert: generates images for the reference prompts and
    scores them. ``demo`` is True on demo backends (tiny models, demo scorers)."""

    demo: bool

    def __call__(self, expert: Expert) -> list[Calibration]:
        """The scores of the expert for each reference prompt (resumable)."""


class ExecutorCalibrator:
    """The calibrator over a ``tools.calibration`` executor and the graph's reference prompts.

    Only the prompts the expert has no scores for yet are generated (resumable); their
    sample images are kept at once, their scores are the crawl's next node's to write.
    """

    def __init__(self, graph: UniversalGraph, executor: Executor, base: BaseFamily) -> None:
        self.graph = graph
        self.executor = executor
        self.base = base

    @property
    def demo(self) -> bool:
        return self.executor.demo

    def __call__(self, expert: Expert) -> list[Calibration]:
        from tools.calibration.errors import CalibrationError
        from tools.calibration.tasks import ExpertTask

        refs = self.graph.store.reference_prompts()
        if not refs:
            raise CalibrationError(
                "the graph has no reference prompts: add some with `diffgraph graph "
                "add-ref-prompts FILE` (or `diffgraph crawl --ref-prompts FILE`)"
            )
        done = self.graph.store.calibrated_pairs(expert.id)
        pending = [(r.id, r.text) for r in refs if r.id not in done]
        if not pending:
            return []
        (result,) = self.executor.run([ExpertTask.for_expert(expert, pending, self.base)])
        if result.error is not None:
            raise CalibrationError(f"calibrating {expert.id} failed: {result.error}")
        self.graph.set_samples(expert.id, result.samples)  # shown on the expert's page
        return [
            Calibration(expert_id=expert.id, ref_id=ref_id, scores=scores)
            for ref_id, scores in result.scores.items()
        ]


def expert_id(platform: str, model: PlatformModel) -> str:
    """Stable expert id of a model's chosen (first) version."""
    version = model.versions[0]
    if platform == "huggingface":
        return f"hf-{model.id}@{version.id[:12]}"
    if platform == "local":
        return f"local-{version.id[:12]}"
    return f"{platform}-{model.id}-v{version.id}"


def weights_folder(root: Path, expert_id: str) -> Path:
    """``root/<expert id as a safe folder name>``."""
    return Path(root) / re.sub(r"[^A-Za-z0-9._-]+", "_", expert_id)


def _download(
    http: HttpClient, file: PlatformFile, dest_dir: Path, policy: DownloadPolicy
) -> DownloadedFile:
    if not file.download_url:
        raise PlatformError(f"{file.name}: the platform gives no download URL")
    return download(
        http, file.download_url, dest_dir, file.name, file.sha256, file.size_bytes, policy
    )


class CivitaiSource:
    """Civitai, or the local demo platform that speaks its API."""

    def __init__(self, client: CivitaiClient, sort: str = "Highest Rated", page_size: int = 100):
        self.client = client
        self.platform = client.platform
        self.demo = client.platform == "demo"
        self.sort = sort
        self.page_size = page_size
        self.notes: list[str] = []

    def iter_models(
        self, base: BaseFamily, types: Sequence[str]
    ) -> Iterator[PlatformModel | Skipped]:
        for page in self.client.iter_pages(
            types=types, base=base, sort=self.sort, limit=self.page_size
        ):
            yield from page.skipped
            yield from page.models

    def exists(self, model_id: str) -> bool:
        try:
            self.client.model(model_id)
        except NotFoundError:
            return False
        return True

    def covers(self, expert: Expert) -> bool:
        return True

    def fetch(self, file: PlatformFile, dest_dir: Path, policy: DownloadPolicy) -> DownloadedFile:
        return _download(self.client.http, file, dest_dir, policy)

    def close(self) -> None:
        self.client.close()


class HuggingFaceSource:
    """LoRAs and fine-tunes of a base model on the Hugging Face Hub."""

    platform = "huggingface"

    def __init__(self, client: HuggingFaceClient) -> None:
        self.client = client
        self.demo = client.demo
        self.notes: list[str] = []

    def iter_models(
        self, base: BaseFamily, types: Sequence[str]
    ) -> Iterator[PlatformModel | Skipped]:
        for repo, type_ in self.client.list_repos(base, types):
            try:
                yield self.client.model(repo, type_, base)
            except PlatformError as exc:
                yield Skipped(item=f"huggingface {repo}", reason=str(exc)[:200])

    def exists(self, model_id: str) -> bool:
        return self.client.exists(model_id)

    def covers(self, expert: Expert) -> bool:
        return True

    def fetch(self, file: PlatformFile, dest_dir: Path, policy: DownloadPolicy) -> DownloadedFile:
        return _download(self.client.http, file, dest_dir, policy)

    def close(self) -> None:
        self.client.close()


class LocalSource:
    """Weight files already on disk (A1111 / ComfyUI model folders); nothing is copied."""

    platform = "local"
    demo = False

    def __init__(self, scanner: LocalScanner, roots: Sequence[Path]) -> None:
        self.scanner = scanner
        self.roots = [Path(r).resolve() for r in roots]
        self._present: dict[str, str] = {}  # model id (hash) -> the file found now
        self.notes: list[str] = []

    def iter_models(
        self, base: BaseFamily, types: Sequence[str]
    ) -> Iterator[PlatformModel | Skipped]:
        missing = [str(r) for r in self.roots if not r.is_dir()]
        if missing:  # a typo must not read as "every file was deleted"
            raise PlatformError(f"local model folder {', '.join(missing)} does not exist")
        models, skipped = self.scanner.scan(self.roots)
        self._present = {m.id: m.versions[0].files[0].local_path or "" for m in models}
        if self.scanner.lookup_error:
            self.notes.append(
                f"Civitai look-ups turned off after the first failure: {self.scanner.lookup_error}"
            )
        yield from skipped
        yield from models

    def exists(self, model_id: str) -> bool:
        return model_id in self._present

    def covers(self, expert: Expert) -> bool:
        path = expert.file.path if expert.file else None
        return bool(path) and any(Path(path).resolve().is_relative_to(r) for r in self.roots)

    def found_at(self, model_id: str) -> str | None:
        """Where this scan found the file of ``model_id`` (None when it did not)."""
        return self._present.get(model_id)

    def fetch(self, file: PlatformFile, dest_dir: Path, policy: DownloadPolicy) -> DownloadedFile:
        path = Path(file.local_path or "")
        if not path.is_file():
            raise PlatformError(f"{path} is gone: it was moved or deleted since the scan")
        digest = self.scanner.sha256(path)
        if file.sha256 and digest != file.sha256:
            raise HashMismatchError(
                f"{path} changed since the scan (SHA-256 {digest[:12]}, was {file.sha256[:12]}): "
                "run the crawl again"
            )
        return DownloadedFile(
            path=str(path), sha256=digest, size_bytes=path.stat().st_size, verified=True
        )

    def close(self) -> None:
        if self.scanner.civitai is not None:
            self.scanner.civitai.close()
        if self.scanner.hash_cache is not None:
            self.scanner.hash_cache.close()
