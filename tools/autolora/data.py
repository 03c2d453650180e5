"""Training material from the universal graph: LoRA experts with weights, and captions."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from graph.errors import DiffGraphError
from graph.records import BaseFamily, Expert, ExpertKind, ExpertStatus
from tools.autolora.errors import AutoLoRAError
from tools.weights.adapter import Adapter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GraphLora:
    """A LoRA expert of the graph with its weights read into canonical form."""

    expert: Expert
    adapter: Adapter

    @property
    def path(self) -> Path:
        return expert_weights(self.expert)

    @property
    def captions(self) -> tuple[str, ...]:
        return captions_of(self.expert)


def captions_of(expert: Expert) -> tuple[str, ...]:
    """The expert's example-image prompts and its registered description (deduplicated)."""
    texts = [*expert.example_prompts, expert.description]
    return tuple(dict.fromkeys(t.strip() for t in texts if t.strip()))


def expert_weights(expert: Expert) -> Path:
    """The expert's local weights file; raises when it has none."""
    path = Path(expert.file.path) if expert.file and expert.file.path else None
    if path is None or not path.exists():
        raise AutoLoRAError(
            f"expert {expert.id} has no local weights file ({path or 'no path recorded'}): "
            "download it first (`diffgraph crawl`)"
        )
    return path


def read_expert(expert: Expert, allow_pickle: bool = False) -> Adapter:
    """The canonical adapter of a LoRA expert's weights file."""
    from tools.weights.read import read_adapter

    return read_adapter(expert_weights(expert), family=expert.base, allow_pickle=allow_pickle)


def graph_loras(
    graph, family: BaseFamily, allow_pickle: bool = False
) -> tuple[list[GraphLora], dict[str, str]]:
    """Active LoRA experts of ``family`` whose weights read; the others by id with the
    reason they were left out."""
    usable, skipped = [], {}
    for expert in graph.experts(kind=ExpertKind.PEFT, base=family, status=ExpertStatus.ACTIVE):
        try:
            usable.append(GraphLora(expert, read_expert(expert, allow_pickle)))
        except DiffGraphError as exc:
            skipped[expert.id] = str(exc)
    if skipped:
        logger.info("%d LoRA expert(s) left out (no readable weights)", len(skipped))
    return usable, skipped
