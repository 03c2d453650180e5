"""Expert Selection Agent: from a user prompt to the experts to merge (paper §3.2)."""

from agents.selection.graph import build_graph, make_context, select
from agents.selection.result import DroppedCandidate, SelectedExpert, SelectionResult
from agents.selection.state import SelectionContext

__all__ = [
    "DroppedCandidate",
    "SelectedExpert",
    "SelectionContext",
    "SelectionResult",
    "build_graph",
    "make_context",
    "select",
]
