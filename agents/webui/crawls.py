"""A crawl started from the web UI: runs in a background thread, logs what each candidate
became, stops at the next node when asked, and resumes like ``diffgraph crawl`` (the same
settings continue the unfinished session from its checkpoint)."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import ExitStack
from typing import TYPE_CHECKING, Literal

from pydantic import ValidationError

from agents.webui.errors import WebUIError
from graph.errors import DiffGraphError, first_error

if TYPE_CHECKING:
    from agents.construction.schemas import CrawlReport, CrawlRequest
    from graph.embedding import Embedder
    from tools.settings import Settings

log = logging.getLogger(__name__)

CrawlState = Literal["running", "stopping", "stopped", "finished", "failed"]
MAX_LOG_LINES = 2000


class CrawlStopped(Exception):
    """Raised between two nodes of the crawl when the user pressed stop."""


def crawl_request(
    source: str,
    base: str,
    types: list[str],
    max_experts: int,
    max_download_gb: float,
    time_budget: str,
    calibrate: bool,
    local_path: str = "",
) -> CrawlRequest:
    """The crawl's request from the form, checked like the CLI's options."""
    from agents.construction.cli import parse_duration
    from agents.construction.schemas import CrawlRequest

    try:
        time_budget_s = parse_duration(time_budget or "")
    except DiffGraphError as exc:
        raise WebUIError(f"invalid crawl option: {str(exc).removeprefix('--')}") from exc
    try:
        request = CrawlRequest(
            source=source,
            base=base,
            types=types,
            max_experts=int(max_experts),
            max_download_bytes=int(float(max_download_gb) * 2**30),
            time_budget_s=time_budget_s,
            calibrate=calibrate,
            local_paths=[local_path.strip()] if local_path.strip() else [],
        )
    except ValidationError as exc:
        raise WebUIError(f"invalid crawl option {first_error(exc, got_limit=200)}") from exc
    except (TypeError, ValueError) as exc:
        raise WebUIError(f"invalid crawl option: {exc}") from exc
    if request.source == "local" and not request.local_paths:
        raise WebUIError("the local source needs the path of a model folder")
    return request


class CrawlJob:
    """One crawl in a background thread; read :attr:`log`, :attr:`state`, :attr:`report`."""

    def __init__(
        self,
        settings: Settings,
        request: CrawlRequest,
        fresh: bool = False,
        embedder: Embedder | None = None,
    ) -> None:
        self.settings = settings
        self.request = request
        self.fresh = fresh
        self.embedder = embedder
        self.state: CrawlState = "running"
        self.stage = "starting"
        self.done = 0
        self.total: int | None = None
        self.log: list[str] = []
        self.report: CrawlReport | None = None
        self.error: str | None = None
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webui-crawl", daemon=True)

    def start(self) -> CrawlJob:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the node that runs now; the session stays resumable."""
        if self.state == "running":
            self.state = "stopping"
            self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _say(self, line: str) -> None:
        self.log.append(line)
        del self.log[:-MAX_LOG_LINES]

    def _run(self) -> None:
        from agents.construction.graph import make_calibrator, make_context, run_crawl
        from graph.universal import UniversalGraph

        settings, request = self.settings, self.request
        try:
            with ExitStack() as stack:
                if request.source == "demo" and request.platform_url is None:
                    request = request.model_copy(update={"platform_url": self._demo(stack)})
                graph = stack.enter_context(UniversalGraph(settings.graph, self.embedder))
                calibrator = (
                    make_calibrator(settings, graph, request.base, stack)
                    if request.calibrate
                    else None
                )
                context = make_context(request, settings, graph, stack, calibrator)
                self.report = run_crawl(
                    request,
                    context,
                    settings.data_dir / "crawl" / "checkpoints.sqlite",
                    self._update,
                    self.fresh,
                )
            self.state = "finished"
            self._say(f"finished: {self.summary()}")
        except CrawlStopped:
            self.state = "stopped"
            self._say("stopped: start the same crawl again to resume it")
        except DiffGraphError as exc:
            self.state, self.error = "failed", str(exc)
            self._say(f"error: {exc}")
        except Exception as exc:  # a bug: the page says so, the log has the traceback
            log.exception("the crawl failed")
            self.state = "failed"
            self.error = f"internal error ({type(exc).__name__}): see the server log"
            self._say(f"error: {self.error}")

    def _demo(self, stack: ExitStack) -> str:
        from tools.platforms.demo import DemoPlatform, demo_catalogue

        port = self.settings.platforms.demo_port
        platform = DemoPlatform(
            self.settings.data_dir / "demo-platform", catalogue=demo_catalogue(1), port=port
        )
        try:
            stack.enter_context(platform)
        except OSError as exc:
            raise WebUIError(
                f"cannot start the demo platform on port {port}: {exc}; set "
                "DIFFGRAPH_PLATFORMS__DEMO_PORT to a free port"
            ) from exc
        self._say(f"DEMO DATA: demo platform at {platform.url}")
        return platform.url

    def _update(self, node: str, values: dict) -> None:
        if node == "discover":
            self.total = len(values.get("queue", []))
            self._say(f"discovered {self.total} candidates")
        elif node == "finish_item":
            for outcome in values.get("outcomes", []):
                reason = f" - {outcome['reason']}" if outcome.get("reason") else ""
                self._say(f"{outcome['status']:>10} {outcome['item']} {outcome['name']}{reason}")
            self.done += 1
        self.stage = node.replace("_", " ")
        if self._stop.is_set():
            raise CrawlStopped()

    def summary(self) -> str:
        report = self.report
        if report is None:
            return self.error or self.state
        text = (
            f"registered {len(report.registered)}, updated {len(report.updated)}, deprecated "
            f"{len(report.deprecated)}, skipped {len(report.skipped)}, failed "
            f"{len(report.failed)}, up to date {report.up_to_date}, calibration edges "
            f"{report.calibration_edges}"
        )
        if report.demo:
            text += " (DEMO DATA)"
        if report.stopped_by:
            text += f"; stopped by {report.stopped_by}"
        return text

    def progress(self) -> str:
        """One line: state, stage, items done of total, elapsed time."""
        total = "?" if self.total is None else self.total
        elapsed = time.monotonic() - self.started
        return f"{self.state} · {self.stage} · {self.done}/{total} candidates · {elapsed:.0f} s" + (
            f" · {self.error}" if self.error else ""
        )
