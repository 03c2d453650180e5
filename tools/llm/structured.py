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
    to ``max_retries`` times with the validation error appended to the conversation, and
    so is a reply cut off at the length limit. A refusal, a content-filter stop, a
    timeout, an unreachable endpoint or an HTTP error falls back at once; whatever the
    client raises never escapes. A server that rejects ``json_schema`` is switched to
    ``json_mode`` (said once, and remembered for the process). Every request is traced as
    an ``llm_call`` event and a fallback as a ``fallback`` event.
    """
    if model is None:
        return StructuredResult(fallback(), "no-llm")
    from langchain_core.messages import AIMessage, HumanMessage

    conversation = _with_schema_instruction(_as_messages(messages), schema)
    method = _method_for(model, method)
    runnable = model.with_structured_output(wire_schema(schema), method=method, include_raw=True)
    model_name = getattr(model, "model_name", None)
    calls: list[LLMCall] = []
    error = "no attempt made"
    attempt = 0
    while attempt <= max_retries:
        attempt += 1
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
        except Exception as exc:  # every LLM failure falls back, traced
            call.latency_ms = (time.perf_counter() - start) * 1000
            failure = _failure(exc, model)
            call.reply = failure.partial
            error = call.error = failure.message
            _record(tracer, node, call, calls)
            if failure.schema_rejected and method == "json_schema":
                method = _downgrade(model, tracer, node, failure.message)
                runnable = model.with_structured_output(
                    wire_schema(schema), method=method, include_raw=True
                )
                attempt -= 1  # the server's limitation, not the model's fault
                continue
            if failure.retry and attempt <= max_retries:
                conversation = [
                    *conversation,
                    AIMessage(content=failure.partial or ""),
                    HumanMessage(content=_retry_text(error)),
                ]
                continue
            break
        call.latency_ms = (time.perf_counter() - start) * 1000
        raw = out["raw"]
        reply_text = _reply_text(raw)
        call.reply = reply_text
        usage = getattr(raw, "usage_metadata", None) or {}
        call.prompt_tokens = usage.get("input_tokens")
        call.completion_tokens = usage.get("output_tokens")
        metadata = getattr(raw, "response_metadata", None) or {}
        call.model = metadata.get("model_name", model_name)
        refusal = _refusal(raw)
        if refusal is not None:  # retrying the same request would be refused again
            error = call.error = refusal
            _record(tracer, node, call, calls)
            break
        try:
            data = _lenient_json(reply_text)  # not langchain's parse: it accepts cut-off JSON
            value = schema.model_validate(data)
            if check is not None:
                check(value)
        except (ValidationError, ValueError) as exc:
            error = call.error = _describe(exc)
            if metadata.get("finish_reason") == "length":
                error = call.error = f"{_cut_off(model)} ({error})"
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


@dataclass
class _Failure:
    """Why a request raised, and what to do next."""

    message: str
    retry: bool = False  # worth asking again (with the error appended)
    schema_rejected: bool = False  # the server does not take ``json_schema``
    partial: str | None = None  # the cut-off reply, when there was one


def _failure(exc: Exception, model: BaseChatModel) -> _Failure:
    """Classify an exception raised by the client (length, refusal, filter, HTTP, ...)."""
    import openai
    from langchain_core.exceptions import ModelRefusalError

    name = type(exc).__name__
    if isinstance(exc, openai.LengthFinishReasonError):
        partial = None
        completion = getattr(exc, "completion", None)
        if completion is not None and completion.choices:
            partial = completion.choices[0].message.content
        return _Failure(_cut_off(model), retry=True, partial=partial)
    if isinstance(exc, openai.ContentFilterFinishReasonError):
        return _Failure("the server's content filter stopped the reply")
    if isinstance(exc, ModelRefusalError):
        return _Failure(f"the model refused: {exc}")
    if isinstance(exc, openai.APITimeoutError):
        return _Failure(f"LLM request timed out ({name})")
    if isinstance(exc, openai.APIConnectionError):
        return _Failure(f"LLM server unreachable: {name}: {exc}")
    if isinstance(exc, openai.APIStatusError):
        message = f"LLM request failed: HTTP {exc.status_code}: {_short(exc)}"
        # llama-cpp-python's server answers an unknown response_format type with a 500
        rejected = exc.status_code in (400, 415, 422, 500, 501) and _mentions_schema(exc)
        return _Failure(message, schema_rejected=rejected)
    return _Failure(f"LLM request failed: {name}: {_short(exc)}")


def _short(exc: Exception, limit: int = 300) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text if len(text) <= limit else text[:limit] + "..."


def _mentions_schema(exc: Exception) -> bool:
    text = str(getattr(exc, "body", None) or "") + " " + str(exc)
    return "json_schema" in text or "response_format" in text


def _cut_off(model: BaseChatModel) -> str:
    cap = getattr(model, "max_tokens", None)
    limit = f" of {cap} tokens" if cap else ""
    return (
        f"the reply was cut off at the length limit{limit} before the JSON was complete "
        "(raise llm.max_tokens, or keep the reply short)"
    )


def _refusal(raw: Any) -> str | None:
    """The model's refusal (``message.refusal``) or a content-filter stop, if any."""
    if raw is None:
        return None
    refusal = (getattr(raw, "additional_kwargs", None) or {}).get("refusal")
    if refusal:
        return f"the model refused: {refusal}"
    finish = (getattr(raw, "response_metadata", None) or {}).get("finish_reason")
    if finish == "content_filter":
        return "the server's content filter stopped the reply"
    return None


# Servers (base URL, model) that rejected ``json_schema``: later calls use json_mode at once.
_NO_JSON_SCHEMA: set[tuple[str | None, str | None]] = set()


def _server_key(model: BaseChatModel) -> tuple[str | None, str | None]:
    return getattr(model, "openai_api_base", None), getattr(model, "model_name", None)


def _method_for(model: BaseChatModel, method: StructuredMethod) -> StructuredMethod:
    if method == "json_schema" and _server_key(model) in _NO_JSON_SCHEMA:
        return "json_mode"
    return method


def _downgrade(
    model: BaseChatModel, tracer: TraceWriter | None, node: str | None, reason: str
) -> StructuredMethod:
    """Switch this server to json_mode; say so once per server and in the trace."""
    key = _server_key(model)
    if key not in _NO_JSON_SCHEMA:
        _NO_JSON_SCHEMA.add(key)
        log.warning(
            "the LLM server %s rejected structured output (json_schema): using json_mode from "
            'now on (set llm.structured_method = "json_mode" to skip this probe)',
            key[0] or "?",
        )
    if tracer is not None:
        tracer.node(
            node or "llm",
            data={"structured_method": "json_mode", "was": "json_schema", "reason": reason},
        )
    return "json_mode"


# llama.cpp's grammar converter spells ``maxLength`` out one optional character at a time and
# refuses a rule repeated more than 2000 times (the server then fails the request or dies):
# longer bounds are left to the client-side validation.
GRAMMAR_MAX_LENGTH = 500


def wire_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema sent to the server, ``$ref`` inlined (some local servers' grammar
    converters do not follow references), without ``maxLength`` bounds over
    :data:`GRAMMAR_MAX_LENGTH` (the reply is still validated against ``schema``)."""
    from langchain_core.utils.json_schema import dereference_refs

    inlined = dereference_refs(schema.model_json_schema())
    inlined.pop("$defs", None)
    return _without_long_bounds(inlined)


def _without_long_bounds(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: _without_long_bounds(v)
            for k, v in node.items()
            if not (k == "maxLength" and isinstance(v, int) and v > GRAMMAR_MAX_LENGTH)
        }
    if isinstance(node, list):
        return [_without_long_bounds(v) for v in node]
    return node


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
