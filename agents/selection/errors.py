"""Errors of the Expert Selection Agent."""

from graph.errors import DiffGraphError


class SelectionError(DiffGraphError, ValueError):
    """A prompt or a graph the selection agent cannot work with."""


class EmptyPromptError(SelectionError):
    def __init__(self) -> None:
        super().__init__(
            "the prompt is empty: expected a description of the image, e.g. diffgraph select "
            '"a portrait of a young woman with red hair, watercolor"'
        )


class NoExpertsError(SelectionError):
    def __init__(self, family: str, other_families: dict[str, int]) -> None:
        elsewhere = (
            "; the graph has active experts of "
            + ", ".join(f"{name} ({count})" for name, count in sorted(other_families.items()))
            + ": choose one with --base or DIFFGRAPH_SELECTION__FAMILY"
            if other_families
            else ""
        )
        super().__init__(
            f"the graph has no active experts of the {family} family to select from{elsewhere}; "
            f"add some with `diffgraph crawl --base {family}` or `diffgraph graph add-expert`"
        )


class TagWeightError(SelectionError):
    def __init__(self, tag: str, weight: float, low: float, high: float) -> None:
        super().__init__(
            f"{tag}: weight {weight:g} is out of range: give a LoRA weight from {low:g} to "
            f"{high:g} (e.g. <lora:name:0.8>)"
        )
