"""Expert Selection Agent: from a user prompt to the experts to merge (paper §3.2).

The names below load on first use, so that importing the package (the CLI does, to
register ``select``) stays cheap.
"""

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agents.selection.graph import make_context, select
    from agents.selection.result import DroppedCandidate, SelectedExpert, SelectionResult
    from agents.selection.state import SelectionContext

_WHERE = {
    "DroppedCandidate": "agents.selection.result",
    "SelectedExpert": "agents.selection.result",
    "SelectionResult": "agents.selection.result",
    "SelectionContext": "agents.selection.state",
    "make_context": "agents.selection.graph",
    "select": "agents.selection.graph",
}

__all__ = [
    "DroppedCandidate",
    "SelectedExpert",
    "SelectionContext",
    "SelectionResult",
    "make_context",
    "select",
]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_WHERE[name]), name)
