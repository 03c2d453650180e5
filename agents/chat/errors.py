"""Errors of the chat loop."""

from graph.errors import DiffGraphError


class ChatError(DiffGraphError, ValueError):
    """A message, command or thread the chat cannot act on."""
