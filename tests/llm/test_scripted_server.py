"""The scripted OpenAI-protocol server: plain, streamed and tool-call replies, via the real
langchain-openai client."""

from __future__ import annotations

import httpx
from pydantic import BaseModel

from tools.llm import make_chat_model
from tools.llm.scripted_server import Reply


class Answer(BaseModel):
    word: str


def test_plain_reply_usage_and_recorded_request(openai_server):
    openai_server.push(Reply(content="hello there", usage=(11, 2)))
    model = make_chat_model(openai_server.llm_settings())
    reply = model.invoke([("system", "s"), ("user", "say hi")])
    assert reply.content == "hello there"
    assert reply.usage_metadata["input_tokens"] == 11
    assert reply.usage_metadata["output_tokens"] == 2
    (request,) = openai_server.chat_requests
    assert request.last_user_text == "say hi" and request.body["model"] == "scripted-model"


def test_streaming_reply(openai_server):
    openai_server.push("streamed text")
    model = make_chat_model(openai_server.llm_settings())
    chunks = list(model.stream([("user", "go")]))
    assert "".join(c.content for c in chunks) == "streamed text"
    assert openai_server.chat_requests[0].body["stream"] is True


def test_tool_call_and_responder(openai_server):
    openai_server.respond_with(lambda request: {"word": request.last_user_text.upper()})
    model = make_chat_model(openai_server.llm_settings())
    runnable = model.with_structured_output(Answer, method="function_calling")
    assert runnable.invoke([("user", "abc")]) == Answer(word="ABC")
    assert runnable.invoke([("user", "xyz")]) == Answer(word="XYZ")


def test_models_route_and_exhausted_queue(openai_server):
    models = httpx.get(openai_server.base_url + "/models").json()
    assert models["data"][0]["id"] == "scripted-model"
    response = httpx.post(openai_server.base_url + "/chat/completions", json={"messages": []})
    assert response.status_code == 400 and "no reply left" in response.text
