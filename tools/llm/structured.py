"""One LLM decision as a pydantic schema: ask, validate, retry with the error, fall back."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from tools.tracing import LLMCall, Mode, TraceWriter

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

log = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)
F = TypeVar("F")
StructuredMethod = Literal["json_schema", "function_calling", "json_mode"]

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


@dataclass
class StructuredResult(Generic[T]):
    """The decision and how it was reached.

    ``mode`` is ``"llm"`` (a valid reply), ``"no-llm"`` (no model configured: the
    deterministic function ran) or ``"fallback"`` (the model failed ``attempts`` times or
    could not be reached; ``error`` says why).
    """

    value: T
    mode: Mode
    attempts: int = 0
    error: str | None = None
    calls: list[LLMCall] = field(default_factory=list)

    @property
    def latency_ms(self) -> float:
        return sum(c.latency_ms or 0.0 for c in self.calls)

    @property
    def prompt_tokens(self) -> int:
        return sum(c.prompt_tokens or 0 for c in self.calls)

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens or 0 for c in self.calls)


def structured_call(
    model: BaseChatModel | None,
    schema: type[T],
    messages: Sequence[BaseMessage | tuple[str, str]],
    *,
    fallback: Callable[[], F],
    tracer: TraceWriter | None = None,
    node: str | None = None,
    max_retries: int = 1,
    method: StructuredMethod = "json_schema",
    check: Callable[[T], None] | None = None,
) -> StructuredResult[T | F]:
    """Ask ``model`` for a ``schema`` instance; on failure use ``fallback()``.

    ``fallback`` usually returns a ``schema`` instance too, but may return the caller's
    own type (the value is then whatever it returned).

    Each reply is validated against ``schema`` (and by ``check``, which raises
    ``ValueError`` to reject a semantically wrong reply). An invalid reply is retried up
    to ``max_retries`` times with the validation error appended to the conversation. An
    unreachable endpoint or HTTP error falls back at once. Every request is traced as an
    ``llm_call`` event and a fallback as a ``fallback`` event.
    """
    if model is None:
        return StructuredResult(fallback(), "no-llm")
    import openai
    from langchain_core.messages import AIMessage, HumanMessage

    conversation = _with_schema_instruction(_as_messages(messages), schema)
    runnable = model.with_structured_output(wire_schema(schema), method=method, include_raw=True)
    model_name = getattr(model, "model_name", None)
    calls: list[LLMCall] = []
    error = "no attempt made"
    for attempt in range(1, max_retries + 2):
        call = LLMCall(
            model=model_name,
            messages=[_message_dict(m) for m in conversation],
            schema=schema.__name__,
            method=method,
            attempt=attempt,
        )
        start = time.perf_counter()
        try:
            out = runnable.invoke(conversation)
        except (openai.APIError, OSError) as exc:
            call.latency_ms = (time.perf_counter() - start) * 1000
            error = call.error = f"LLM request failed: {type(exc).__name__}: {exc}"
            _record(tracer, node, call, calls)
            break
        call.latency_ms = (time.perf_counter() - start) * 1000
        raw = out["raw"]
        reply_text = _reply_text(raw)
        call.reply = reply_text
        usage = getattr(raw, "usage_metadata", None) or {}
        call.prompt_tokens = usage.get("input_tokens")
        call.completion_tokens = usage.get("output_tokens")
        call.model = (getattr(raw, "response_metadata", None) or {}).get("model_name", model_name)
        try:
            data = _lenient_json(reply_text)  # not langchain's parse: it accepts cut-off JSON
            value = schema.model_validate(data)
            if check is not None:
                check(value)
        except (ValidationError, ValueError) as exc:
            error = call.error = _describe(exc)
            _record(tracer, node, call, calls)
            conversation = [
                *conversation,
                AIMessage(content=reply_text or ""),
                HumanMessage(content=_retry_text(error)),
            ]
            continue
        call.valid = True
        _record(tracer, node, call, calls)
        return StructuredResult(value, "llm", attempt, None, calls)
    log.warning("%s: no usable LLM reply (%s); using the no-LLM policy", node or "llm", error)
    if tracer is not None:
        tracer.fallback(node, error, schema=schema.__name__, attempts=len(calls))
    return StructuredResult(fallback(), "fallback", len(calls), error, calls)


def wire_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema sent to the server, ``$ref`` inlined (some local servers' grammar
    converters do not follow references)."""
    from langchain_core.utils.json_schema import dereference_refs

    inlined = dereference_refs(schema.model_json_schema())
    inlined.pop("$defs", None)
    return inlined


def schema_instruction(schema: type[BaseModel]) -> str:
    """The format rule added to the system message (servers that ignore
    ``response_format`` still see what is wanted)."""
    return (
        "Reply with one JSON object that matches this JSON schema and nothing else:\n"
        + json.dumps(wire_schema(schema), separators=(",", ":"))
    )


def _as_messages(messages: Sequence[Any]) -> list[BaseMessage]:
    from langchain_core.messages import convert_to_messages

    return list(convert_to_messages(list(messages)))


def _with_schema_instruction(
    messages: list[BaseMessage], schema: type[BaseModel]
) -> list[BaseMessage]:
    from langchain_core.messages import SystemMessage

    rule = schema_instruction(schema)
    if messages and isinstance(messages[0], SystemMessage):
        first = SystemMessage(content=f"{messages[0].content}\n\n{rule}")
        return [first, *messages[1:]]
    return [SystemMessage(content=rule), *messages]


def _message_dict(message: BaseMessage) -> dict[str, Any]:
    return {"role": message.type, "content": message.content}


def _reply_text(raw: Any) -> str | None:
    """The reply as text: the content, or the first tool call's arguments as JSON."""
    if raw is None:
        return None
    tool_calls = getattr(raw, "tool_calls", None) or []
    if tool_calls:
        return json.dumps(tool_calls[0].get("args", {}), ensure_ascii=False)
    invalid = getattr(raw, "invalid_tool_calls", None) or []
    if invalid:
        return invalid[0].get("args")
    content = raw.content
    if isinstance(content, list):
        content = "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return content


def _lenient_json(text: str | None) -> Any:
    """JSON from a reply that may wrap it in a code fence or in prose."""
    if not text or not text.strip():
        raise ValueError("the reply was empty: expected a JSON object")
    fenced = _FENCE.search(text)
    candidate = fenced.group(1) if fenced else text
    try:
        return json.loads(candidate)
    except json.JSONDecodeError:
        start, end = candidate.find("{"), candidate.rfind("}")
        if 0 <= start < end:
            try:
                return json.loads(candidate[start : end + 1])
            except json.JSONDecodeError:
                pass
    raise ValueError(f"the reply is not JSON: {text[:200]!r}")


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = [
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
            for e in exc.errors()[:5]
        ]
        more = exc.error_count() - len(parts)
        return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
    return str(exc)


def _retry_text(error: str) -> str:
    return (
        f"Your previous reply was not valid: {error}. Reply again with only a JSON object "
        "that matches the schema."
    )


def _record(
    tracer: TraceWriter | None, node: str | None, call: LLMCall, calls: list[LLMCall]
) -> None:
    calls.append(call)
    if tracer is not None:
        tracer.event("llm_call", node, llm=call, latency_ms=call.latency_ms, mode="llm")
