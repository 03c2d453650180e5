"""Errors the web UI shows as messages in the page."""

from __future__ import annotations

from graph.errors import DiffGraphError


class WebUIError(DiffGraphError):
    """An input of the web UI that cannot be acted on; the message says the fix."""


class GenerationCancelled(WebUIError):
    """The user cancelled a generation; the thread is as it was before it."""

    def __init__(self) -> None:
        super().__init__("generation cancelled: the thread is as it was before this request")
