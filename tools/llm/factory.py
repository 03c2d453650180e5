"""Building the chat model from settings (``langchain-openai`` against any OpenAI-compatible
endpoint: OpenAI, vLLM, Ollama, llama.cpp server)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pydantic import SecretStr

from tools.settings import LLMSettings

if TYPE_CHECKING:
    from langchain_openai import ChatOpenAI

log = logging.getLogger(__name__)

# Local servers ignore the key, but the OpenAI client refuses to start without one.
NO_KEY = SecretStr("no-key")


def make_chat_model(settings: LLMSettings) -> ChatOpenAI | None:
    """The configured chat model, or None when no endpoint / model is set (no-LLM mode).

    The key is taken from the settings only (never from the environment here) and is
    never logged.
    """
    if not settings.configured:
        log.debug("no LLM configured: agents use the no-LLM policy")
        return None
    from langchain_openai import ChatOpenAI

    log.debug("LLM %s at %s", settings.model, settings.base_url)
    # langchain sends the cap as ``max_completion_tokens``; local servers (llama.cpp,
    # llama-cpp-python, Ollama) read ``max_tokens``, so they get that too; OpenAI itself
    # gets only the current name.
    legacy = None if _is_openai(settings.base_url) else {"max_tokens": settings.max_tokens}
    return ChatOpenAI(
        model=settings.model,
        base_url=settings.base_url,
        api_key=settings.api_key or NO_KEY,
        temperature=settings.temperature,
        timeout=settings.timeout_s,
        max_retries=settings.http_retries,
        max_tokens=settings.max_tokens,
        extra_body=legacy,
    )


def _is_openai(base_url: str | None) -> bool:
    from urllib.parse import urlparse

    return (urlparse(base_url or "").hostname or "").endswith("api.openai.com")
