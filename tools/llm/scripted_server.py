"""A local OpenAI-protocol chat server with scripted replies: tests, benchmarks and evals of
the real client without a language model.

It answers ``POST /v1/chat/completions`` (plain, ``response_format`` json_schema /
json_object, ``tools`` + ``tool_choice``, and ``stream`` with usage chunks) and
``GET /v1/models``, and records every request it received. Replies come from a queue
(``push``) or from a function of the request body (``respond_with``):

- ``str``: the assistant's text content, as is (malformed JSON included);
- ``dict`` or a pydantic model: JSON; sent as a tool call when the request offered tools;
- :class:`Reply`: full control (status code, error, tool calls, usage, delay, a
  ``finish_reason`` such as ``"length"`` or ``"content_filter"``, a ``refusal``).

``reject_json_schema=True`` answers every ``response_format`` of type ``json_schema`` with
a 400, as servers without structured-output support do.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from pydantic import BaseModel

from tools.local_server import LocalServer

MODEL = "scripted-model"


@dataclass
class Reply:
    """One scripted answer."""

    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None  # [{"name": ..., "arguments": {...}}]
    status: int = 200
    error: str | None = None
    usage: tuple[int, int] | None = None  # (prompt_tokens, completion_tokens)
    delay_s: float = 0.0
    finish_reason: str | None = None  # default: "stop" (or "tool_calls")
    refusal: str | None = None  # the model refused (OpenAI's ``message.refusal``)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", [])

    @property
    def last_user_text(self) -> str:
        users = [m for m in self.messages if m.get("role") == "user"]
        return _text(users[-1].get("content")) if users else ""


ReplyLike = Reply | str | dict | BaseModel
Responder = Callable[[RecordedRequest], ReplyLike]


class ScriptedOpenAIServer(LocalServer):
    """Threaded HTTP server on 127.0.0.1 and a random port."""

    thread_name = "scripted-openai-server"

    def __init__(
        self,
        replies: Iterable[ReplyLike] = (),
        model: str = MODEL,
        reject_json_schema: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.reject_json_schema = reject_json_schema
        self.requests: list[RecordedRequest] = []
        self._queue: deque[ReplyLike] = deque(replies)
        self._responder: Responder | None = None
        self._lock = threading.Lock()

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_Handler,), {"server_state": self})

    @property
    def base_url(self) -> str:
        return f"{self.address}/v1"

    def llm_settings(self, **overrides: Any):
        """``LLMSettings`` pointing at this server (no HTTP retries, short timeout)."""
        from tools.settings import LLMSettings

        values = {
            "base_url": self.base_url,
            "model": self.model,
            "api_key": "sk-test-scripted-0123456789abcdef",
            "timeout_s": 10.0,
            "http_retries": 0,
        }
        return LLMSettings(**{**values, **overrides})

    # -- scripting ---------------------------------------------------------------------

    def push(self, *replies: ReplyLike) -> None:
        with self._lock:
            self._queue.extend(replies)

    def respond_with(self, responder: Responder | None) -> None:
        """Answer every request with ``responder(request)`` (the queue is used when None)."""
        self._responder = responder

    @property
    def remaining(self) -> int:
        return len(self._queue)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self._responder is not None:
                item = self._responder(request)
            elif self._queue:
                item = self._queue.popleft()
            else:
                return Reply(
                    status=400,
                    error=f"scripted server: no reply left for request #{len(self.requests)}",
                )
        return _as_reply(item, request.body)


def _as_reply(item: ReplyLike, body: dict[str, Any]) -> Reply:
    if isinstance(item, Reply):
        return item
    if isinstance(item, str):
        return Reply(content=item)
    data = item.model_dump(mode="json") if isinstance(item, BaseModel) else item
    if body.get("tools"):
        return Reply(tool_calls=[{"name": _tool_name(body), "arguments": data}])
    return Reply(content=json.dumps(data))


def _tool_name(body: dict[str, Any]) -> str:
    """The function the request forces (``tool_choice``), else the first one offered."""
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        return choice["function"]["name"]
    if isinstance(choice, str) and choice not in ("auto", "required", "none"):
        return choice
    return body["tools"][0]["function"]["name"]


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def _words(text: str) -> int:
    return len(text.split())


class _Handler(BaseHTTPRequestHandler):
    server_state: ScriptedOpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr
        pass

    def do_GET(self) -> None:
        state = self.server_state
        if self.path.rstrip("/").endswith("/models"):
            state.requests.append(RecordedRequest("GET", self.path, dict(self.headers)))
            self._json(200, {"object": "list", "data": [{"id": state.model, "object": "model"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._json(400, {"error": {"message": "body is not JSON", "type": "invalid_request"}})
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        request = RecordedRequest("POST", self.path, dict(self.headers), body)
        if (
            self.server_state.reject_json_schema
            and (body.get("response_format") or {}).get("type") == "json_schema"
        ):
            self.server_state.requests.append(request)
            message = "response_format type 'json_schema' is not supported by this server"
            self._json(400, {"error": {"message": message, "type": "invalid_request_error"}})
            return
        try:
            reply = self.server_state._next_reply(request)
        except Exception as exc:  # a broken test responder: say so instead of hanging up
            reply = Reply(status=500, error=f"scripted responder raised {exc!r}")
        if reply.delay_s:
            time.sleep(reply.delay_s)
        if reply.status != 200:
            self._json(
                reply.status,
                {"error": {"message": reply.error or "scripted error", "type": "scripted"}},
            )
            return
        message, finish = _message(reply)
        prompt_words = sum(_words(_text(m.get("content"))) for m in body.get("messages", []))
        completion_words = _words(message.get("content") or "") + sum(
            _words(c["function"]["arguments"]) for c in message.get("tool_calls", [])
        )
        prompt_tokens, completion_tokens = reply.usage or (prompt_words, completion_words)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        model = body.get("model") or self.server_state.model
        if body.get("stream"):
            self._stream(model, message, finish, usage, body)
            return
        self._json(
            200,
            {
                "id": f"chatcmpl-scripted-{len(self.server_state.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage,
            },
        )

    def _stream(self, model, message, finish, usage, body) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        base = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "model": model}
        delta = {"role": "assistant", **{k: v for k, v in message.items() if k != "role"}}
        for i, call in enumerate(delta.get("tool_calls", [])):
            call["index"] = i
        chunks = [
            {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
        ]
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**base, "choices": [], "usage": usage})
        for chunk in chunks:
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _message(reply: Reply) -> tuple[dict[str, Any], str]:
    if reply.tool_calls:
        calls = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": call["arguments"]
                    if isinstance(call["arguments"], str)
                    else json.dumps(call["arguments"]),
                },
            }
            for i, call in enumerate(reply.tool_calls)
        ]
        message = {"role": "assistant", "content": None, "tool_calls": calls}
        return message, reply.finish_reason or "tool_calls"
    message = {"role": "assistant", "content": reply.content or ""}
    if reply.refusal is not None:
        message = {"role": "assistant", "content": None, "refusal": reply.refusal}
    return message, reply.finish_reason or "stop"
