"""The one LLM factory and structured calls with retry and deterministic fallback.

Every LLM decision is a pydantic schema: :func:`structured_call` asks the model, validates,
retries with the validation error, then falls back to the caller's deterministic function.
With no LLM configured the deterministic function runs directly (mode ``"no-llm"``).
"""

from tools.llm.factory import make_chat_model
from tools.llm.structured import StructuredMethod, StructuredResult, structured_call
from tools.llm.untrusted import UNTRUSTED_DATA_RULE, quote_untrusted

__all__ = [
    "UNTRUSTED_DATA_RULE",
    "StructuredMethod",
    "StructuredResult",
    "make_chat_model",
    "quote_untrusted",
    "structured_call",
]
