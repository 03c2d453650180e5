"""Images with gated fusion: what ``diffgraph generate --fusion gated`` and the AutoLoRA
benchmark rows run.

Optional checkpoints are merged in place (equal weights unless the plan says otherwise),
the LoRAs are fused by the trained gates in the forward pass, and everything is undone
afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from graph.records import Expert
from tools.autolora.data import expert_weights, read_expert
from tools.autolora.fusion import gated_fusion
from tools.autolora.gates import GateBank


def generate_gated(
    generator,
    request,
    loras: Sequence[Expert],
    fusion: Path | GateBank | None,
    *,
    checkpoint_plan=None,
    weights: Sequence[float] | None = None,
    trigger_words: Sequence[str] | None = None,
):
    """Images for ``request`` with ``loras`` gated-fused into ``generator``'s pipeline.

    ``fusion``: the fusion checkpoint (or a loaded bank; None: untrained gates).
    ``checkpoint_plan`` (a weights-toolkit ``MergePlan`` of checkpoints) is merged in
    place first. Trigger words default to the LoRAs'. Returns a ``GenerationResult``
    (``demo`` also when the gates were trained on demo material).
    """
    generator.check(request)
    adapters = [read_expert(e, generator.allow_pickle) for e in loras]
    if trigger_words is None:
        trigger_words = list(dict.fromkeys(w for e in loras for w in e.trigger_words))
    with (
        generator.merged(checkpoint_plan),
        gated_fusion(generator.pipe, adapters, fusion, weights=weights) as handle,
    ):
        result = generator.generate_merged(request, trigger_words)
    result.demo = result.demo or handle.demo
    return result


def checkpoint_plan(checkpoints: Sequence[Expert]):
    """Equal-weight merge plan of checkpoint experts (None when there are none)."""
    if not checkpoints:
        return None
    from tools.weights.plan import MergePlan, WeightedExpert

    return MergePlan(
        checkpoints=[
            WeightedExpert(path=expert_weights(e), coefficient=0.0, expert_id=e.id)
            for e in checkpoints
        ]
    )
