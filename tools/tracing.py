"""JSON-lines traces of agent runs: one file per run, one event per line.

``<traces_dir>/<agent>/<run_id>.jsonl``. Every line is a :class:`TraceEvent`. The writer
elides embeddings (float lists longer than 32) and scrubs secrets (known key values,
``sk-...``-like tokens, bearer credentials, fields named like ``api_key`` / ``token``)
before anything reaches the disk.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, SecretBytes, SecretStr, ValidationError

from graph.errors import DiffGraphError

log = logging.getLogger(__name__)

EventName = Literal["run_start", "node", "llm_call", "tool_call", "fallback", "error", "run_end"]
Mode = Literal["llm", "no-llm", "fallback"]

MAX_FLOATS = 32
MAX_STRING = 20_000
REDACTED = "***"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SECRET_KEY = re.compile(
    r"(^|[_-])(api[_-]?key|apikey|token|secret|password|passwd|authorization|cookie)($|[_-])",
    re.I,
)
_SECRET_TEXT = (
    re.compile(r"\bsk-[A-Za-z0-9_-]{12,}"),
    re.compile(r"\bhf_[A-Za-z0-9]{16,}"),
    re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)\b(authorization|x-api-key|api[_-]?key)(\s*[:=]\s*)\S+"),
)


class TraceError(DiffGraphError, ValueError):
    """A trace file that cannot be read as TraceEvent lines."""


class LLMCall(BaseModel):
    """One request to the chat model and what came back."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str | None = None
    messages: list[dict[str, Any]] = Field(default_factory=list)
    reply: Any = None
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    schema_name: str | None = Field(None, alias="schema")
    method: str | None = None
    attempt: int = 1
    valid: bool = False
    error: str | None = None


class TraceEvent(BaseModel):
    """One line of a trace file."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    agent: str
    seq: int = Field(ge=0)
    event: EventName
    node: str | None = None
    ts: datetime
    latency_ms: float | None = None
    inputs: Any = None
    outputs: Any = None
    llm: LLMCall | None = None
    mode: Mode | None = None
    error: str | None = None
    data: dict[str, Any] | None = None


def new_run_id() -> str:
    """Sortable to the microsecond and unique: UTC time plus 8 random hex digits."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S.%f}-{uuid.uuid4().hex[:8]}"


def known_secrets(settings: BaseModel) -> list[str]:
    """Every ``SecretStr`` value inside a settings model (nested sections included)."""
    found: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr | SecretBytes):
            secret = value.get_secret_value()
            found.append(secret.decode() if isinstance(secret, bytes) else secret)
        elif isinstance(value, BaseModel):
            found.extend(known_secrets(value))
    return [s for s in found if s]


class Scrubber:
    """Turns arbitrary values into JSON-safe data with secrets removed and embeddings elided."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            value = value.replace(secret, REDACTED)
        for pattern in _SECRET_TEXT:
            value = pattern.sub(_redact_match, value)
        if len(value) > MAX_STRING:
            value = value[:MAX_STRING] + f"... [{len(value) - MAX_STRING} more characters]"
        return value

    def __call__(self, value: Any, depth: int = 0) -> Any:
        if depth > 20:
            return "<nested too deep>"
        if value is None or isinstance(value, bool | int):
            return value
        if isinstance(value, float):
            return value if value == value and abs(value) != float("inf") else str(value)
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, SecretStr | SecretBytes):
            return REDACTED
        if isinstance(value, Enum):
            return self(value.value, depth + 1)
        if isinstance(value, datetime | date):
            return value.isoformat()
        if isinstance(value, Path):
            return self.text(str(value))
        if isinstance(value, bytes):
            return f"<{len(value)} bytes>"
        if isinstance(value, np.ndarray | np.generic):
            return self(value.tolist(), depth + 1)
        if isinstance(value, BaseModel):
            return self(value.model_dump(mode="python"), depth + 1)
        if isinstance(value, dict):
            return {
                str(k): REDACTED if _is_secret_field(str(k), v) else self(v, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            items = list(value)
            if len(items) > MAX_FLOATS and all(isinstance(v, float) for v in items):
                return f"<{len(items)} floats elided>"
            return [self(v, depth + 1) for v in items]
        return self.text(str(value))


def _redact_match(match: re.Match) -> str:
    groups = match.groups()
    if len(groups) >= 2 and groups[1] is not None:  # "authorization: xyz" keeps the key name
        return f"{groups[0]}{groups[1]}{REDACTED}"
    if groups and groups[0] is not None:  # "Bearer xyz"
        return f"{groups[0]} {REDACTED}"
    return REDACTED


def _is_secret_field(key: str, value: Any) -> bool:
    return bool(_SECRET_KEY.search(key)) and not isinstance(value, bool | int | float | type(None))


class TraceWriter:
    """Appends the events of one agent run to ``<traces_dir>/<agent>/<run_id>.jsonl``.

    Lines are flushed as they are written, so an interrupted run leaves a readable trace.
    """

    def __init__(
        self,
        traces_dir: Path,
        agent: str,
        run_id: str | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        self.run_id = run_id or new_run_id()
        for what, value in (("agent", agent), ("run id", self.run_id)):
            if not _NAME.match(value):
                raise TraceError(
                    f"trace {what} {value!r} is not a safe file name: use letters, digits, . _ -"
                )
        self.agent = agent
        self.path = Path(traces_dir) / agent / f"{self.run_id}.jsonl"
        self.scrub = Scrubber(secrets)
        self._seq = 0
        self._lock = threading.Lock()
        self._handle = None

    @classmethod
    def from_settings(cls, settings: Any, agent: str, run_id: str | None = None) -> TraceWriter:
        """A writer under ``settings.traces_dir`` that scrubs every secret in ``settings``."""
        return cls(settings.traces_dir, agent, run_id, secrets=known_secrets(settings))

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def event(
        self,
        event: EventName,
        node: str | None = None,
        *,
        inputs: Any = None,
        outputs: Any = None,
        latency_ms: float | None = None,
        llm: LLMCall | dict | None = None,
        mode: Mode | None = None,
        error: str | BaseException | None = None,
        data: dict[str, Any] | None = None,
    ) -> TraceEvent:
        """Write one event (scrubbed) and return it."""
        if isinstance(error, BaseException):
            error = f"{type(error).__name__}: {error}"
        llm_data = llm.model_dump(by_alias=True) if isinstance(llm, LLMCall) else llm
        with self._lock:
            record = TraceEvent(
                run_id=self.run_id,
                agent=self.agent,
                seq=self._seq,
                event=event,
                node=node,
                ts=datetime.now(timezone.utc),
                latency_ms=None if latency_ms is None else round(latency_ms, 3),
                inputs=self.scrub(inputs),
                outputs=self.scrub(outputs),
                llm=None if llm_data is None else LLMCall.model_validate(self.scrub(llm_data)),
                mode=mode,
                error=None if error is None else self.scrub.text(error),
                data=None if data is None else self.scrub(data),
            )
            self._write(record)
            self._seq += 1
        return record

    def _write(self, record: TraceEvent) -> None:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("a", encoding="utf-8")
        line = json.dumps(record.model_dump(mode="json", by_alias=True), ensure_ascii=False)
        self._handle.write(line + "\n")
        self._handle.flush()

    # -- conveniences ------------------------------------------------------------------

    def run_start(self, inputs: Any = None, **data: Any) -> TraceEvent:
        return self.event("run_start", inputs=inputs, data=data or None)

    def run_end(self, outputs: Any = None, mode: Mode | None = None, **data: Any) -> TraceEvent:
        event = self.event("run_end", outputs=outputs, mode=mode, data=data or None)
        self.close()
        return event

    def node(self, node: str, **fields: Any) -> TraceEvent:
        return self.event("node", node, **fields)

    def tool_call(
        self, node: str | None, tool: str, inputs: Any, outputs: Any, latency_ms: float
    ) -> TraceEvent:
        return self.event(
            "tool_call",
            node,
            inputs=inputs,
            outputs=outputs,
            latency_ms=latency_ms,
            data={"tool": tool},
        )

    def fallback(self, node: str | None, reason: str, **data: Any) -> TraceEvent:
        return self.event("fallback", node, mode="fallback", error=reason, data=data or None)

    def error(self, node: str | None, error: str | BaseException, **data: Any) -> TraceEvent:
        return self.event("error", node, error=error, data=data or None)

    @contextmanager
    def span(self, node: str, inputs: Any = None) -> Iterator[dict[str, Any]]:
        """Time a node; fill the yielded dict with ``outputs`` / ``mode`` / ``data``.

        An exception is recorded as an ``error`` event and re-raised.
        """
        fields: dict[str, Any] = {}
        start = time.perf_counter()
        try:
            yield fields
        except BaseException as exc:
            self.error(node, exc)
            raise
        self.node(node, inputs=inputs, latency_ms=(time.perf_counter() - start) * 1000, **fields)


def read_trace(path: Path) -> list[TraceEvent]:
    """Every event of a trace file, validated; a bad line raises :class:`TraceError`."""
    path = Path(path)
    if not path.is_file():
        raise TraceError(f"trace file {path} does not exist")
    events = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                events.append(TraceEvent.model_validate_json(line))
            except ValidationError as exc:
                raise TraceError(
                    f"{path}:{number} is not a trace event (expected one JSON object per line "
                    f"with run_id, agent, seq, event, ts): {exc.errors()[0]['msg']}"
                ) from exc
    return events
