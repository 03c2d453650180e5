"""The benchmark's rows: a registry of method functions (the paper's Tables 1-5).

A row makes the images of one method for one prompt. The built-in rows run the generate
pipeline (:func:`agents.pipeline.pipeline.run`) with a chosen planner, expert set and merge
method, so every image has its recipe beside it. A row may need a prepared resource (a
trained planner variant, the LLM planner, AutoLoRA's retriever); the benchmark builds each
resource once and marks the rows whose resource cannot be built as unavailable, with the
reason. ``register(Method(...))`` adds a row (the AutoLoRA rows plug in that way).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from evals.errors import BenchmarkError
from evals.variants import VARIANTS

if TYPE_CHECKING:
    from agents.pipeline.pipeline import GenerateOptions, Outcome, PipelineContext
    from agents.selection.result import SelectionResult
    from graph.records import Expert
    from planner.planners import Planner
    from tools.tracing import TraceWriter

RowKind = Literal["method", "ablation"]


class RowExpert(BaseModel):
    """One merged expert of a row, with the planner's coefficient and its merge weight."""

    expert_id: str | None = None
    name: str
    kind: Literal["ckpt", "peft"]
    coefficient: float | None = None
    merge_weight: float | None = None


class RowImages(BaseModel):
    """What one row made for one prompt."""

    images: list[Path]
    experts: list[RowExpert] = Field(default_factory=list)
    planner: str = "none"
    merge: str = "none"
    prompt_used: str = Field(description="the prompt given to the model (trigger words added)")
    demo: bool = False
    notes: list[str] = Field(default_factory=list)
    recipe: Path | None = None

    @classmethod
    def from_outcome(cls, outcome: Outcome) -> RowImages:
        recipe = outcome.recipe
        gated = recipe.fusion == "gated"  # the LoRAs' coefficients are not used then
        merge = f"{recipe.method} {recipe.method_params}" if recipe.method_params else recipe.method
        if gated and recipe.checkpoints:
            merge = f"gated fusion over a {merge} checkpoint merge"
        elif gated:
            merge = "gated fusion"
        experts = [
            RowExpert(
                expert_id=e.expert_id,
                name=e.name,
                kind=e.kind,
                coefficient=None if gated and e.kind == "peft" else e.coefficient,
                merge_weight=None if gated and e.kind == "peft" else e.merge_weight,
            )
            for e in [*recipe.checkpoints, *recipe.loras]
        ]
        return cls(
            images=outcome.image_paths,
            experts=experts,
            planner=recipe.planner,
            merge=merge if recipe.checkpoints or recipe.loras else "none (base model)",
            prompt_used=recipe.final_prompt,
            demo=recipe.demo,
            notes=recipe.notes,
            recipe=outcome.recipe_path,
        )


@dataclass
class PromptCase:
    """One benchmark prompt: its seed (the same for every row) and its one selection."""

    index: int
    prompt: str
    seed: int
    selection: SelectionResult
    gold: list[str] | None = None  # the expert ids that serve it, when labelled

    @property
    def text(self) -> str:
        """The prompt as plain text (what every row generates from and is scored against)."""
        return self.selection.text


@dataclass
class Prepared:
    """A built resource and where it came from (said in the benchmark's output)."""

    value: Any
    source: str
    demo: bool = False


@dataclass
class Bench:
    """The state a benchmark run shares between its rows."""

    pipeline: PipelineContext
    options: GenerateOptions
    out_dir: Path
    pool: list[Expert]
    fixed_experts: list[str]
    pool_limit: int
    merge_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkpoints: dict[str, Path] = field(default_factory=dict)
    train_steps: int | None = None
    train_prompts: list[str] = field(default_factory=list)
    tracer: TraceWriter | None = None
    resources: dict[str, Prepared] = field(default_factory=dict)

    def usable(self, expert_ids: Sequence[str]) -> list[Expert]:
        """The experts of ``expert_ids`` that the pool holds (active, this family, weights)."""
        by_id = {e.id: e for e in self.pool}
        return [by_id[i] for i in expert_ids if i in by_id]


@dataclass
class RowCall:
    """One row for one prompt: where its files go and its prepared resource."""

    bench: Bench
    case: PromptCase
    out_dir: Path
    resource: Any = None


@dataclass(frozen=True)
class Resource:
    """Something rows need, built once per benchmark (raises a DiffGraphError if it can't)."""

    key: str
    build: Callable[[Bench], Prepared]


MethodFn = Callable[[RowCall], RowImages]


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    kind: RowKind
    run: MethodFn
    description: str
    needs: Resource | None = None


REGISTRY: dict[str, Method] = {}


def register(method: Method) -> None:
    """Add a row (names are unique)."""
    if method.name in REGISTRY:
        raise ValueError(f"benchmark row {method.name!r} is already registered")
    REGISTRY[method.name] = method


def get_methods(names: Sequence[str], kind: RowKind) -> list[Method]:
    """The rows named ``names`` (of ``kind``), in the order given."""
    known = [n for n, m in REGISTRY.items() if m.kind == kind]
    unknown = [n for n in names if n not in known]
    if unknown:
        flag = "--methods" if kind == "method" else "--ablations"
        raise BenchmarkError(f"{flag}: unknown row(s) {unknown}: expected some of {known}")
    return [REGISTRY[n] for n in dict.fromkeys(names)]


# -- the pipeline rows -------------------------------------------------------------------


def pipeline_row(
    call: RowCall,
    planner: Planner,
    experts: Sequence[str] | None = None,
    merge: str = "diffgraph",
    notes: Sequence[str] = (),
    fusion: str = "merge",
    params: dict[str, Any] | None = None,
) -> RowImages:
    """Generate through the pipeline: over the prompt's selection (``experts`` None) or
    over exactly ``experts``, with ``planner``'s coefficients and the ``merge`` method
    (``fusion="gated"``: the LoRAs fused by AutoLoRA's gates instead of merged); ``params``:
    the method's parameters when the row has its own (the run's ``merge_params`` win)."""
    from agents.pipeline.pipeline import run

    bench, case = call.bench, call.case
    ctx = replace(bench.pipeline, planner=planner, notes=list(notes))
    options = bench.options.model_copy(
        update={
            "seed": case.seed,
            "experts": None if experts is None else list(experts),
            "method": merge,
            "method_params": {**(params or {}), **bench.merge_params.get(merge, {})},
            "fusion": fusion,
        }
    )
    if experts is None:
        outcome = run(case.prompt, ctx, options, call.out_dir, selection=case.selection)
    else:
        outcome = run(case.text, ctx, options, call.out_dir)
    return RowImages.from_outcome(outcome)


def _equal() -> Planner:
    from planner.planners import EqualPlanner

    return EqualPlanner()


def direct(call: RowCall) -> RowImages:
    return pipeline_row(call, _equal(), experts=[])


def equal(call: RowCall) -> RowImages:
    return pipeline_row(call, _equal())


def random_merge(call: RowCall) -> RowImages:
    from planner.planners import RandomPlanner

    return pipeline_row(call, RandomPlanner(seed=call.case.seed))


def dare(call: RowCall) -> RowImages:
    return pipeline_row(call, _equal(), merge="dare")


def ties(call: RowCall) -> RowImages:
    return pipeline_row(call, _equal(), merge="ties")


def klora(call: RowCall) -> RowImages:
    """K-LoRA-style: per layer the selected LoRA with the largest top-k magnitudes, whole."""
    return pipeline_row(call, _equal(), merge="klora", params={"keep_total": True})


def planned(call: RowCall) -> RowImages:
    """The row's planner over the prompt's selection (DiffGraph and the planner ablations)."""
    return pipeline_row(call, call.resource)


def fixed(call: RowCall) -> RowImages:
    """The planner over the prompt's gold experts when labelled, else the run's fixed set."""
    gold = call.case.gold
    return pipeline_row(
        call, call.resource, experts=call.bench.fixed_experts if gold is None else gold
    )


def _gold(call: RowCall) -> list[str]:
    if call.case.gold is None:
        raise BenchmarkError("this row needs gold experts per prompt (a labelled prompt set)")
    return call.case.gold


def oracle_single(call: RowCall) -> RowImages:
    """The prompt's first gold expert alone (the base model when no expert serves it)."""
    gold = _gold(call)[:1]
    row = pipeline_row(call, _equal(), experts=gold)
    if len(call.case.gold or []) > 1:
        row.notes.append("oracle single: the first gold expert of several")
    return row


def retrieval_single(call: RowCall) -> RowImages:
    """The usable expert whose description embeds nearest the prompt, alone at weight 1."""
    bench = call.bench
    usable = {e.id for e in bench.pool}
    hits = bench.pipeline.graph.search(
        call.case.text, k=len(usable) or 1, base=bench.pipeline.generator.family
    )
    best = next(((e, s) for e, s in hits if e.id in usable), None)
    row = pipeline_row(call, _equal(), experts=[best[0].id] if best else [])
    row.notes.append(
        f"retrieved by description embedding: {best[0].id} (cosine {best[1]:.3f})"
        if best
        else "no usable expert retrieved: the base model"
    )
    return row


def without_esa(call: RowCall) -> RowImages:
    """The planner over every usable expert (a seeded random ``pool_limit`` beyond that)."""
    bench = call.bench
    ids = [e.id for e in bench.pool]
    notes = []
    if len(ids) > bench.pool_limit:
        chosen = set(random.Random(call.case.seed).sample(ids, bench.pool_limit))
        ids = [i for i in ids if i in chosen]
        notes.append(
            f"w/o ESA: {bench.pool_limit} of {len(bench.pool)} experts drawn at random "
            "(benchmark.pool_limit)"
        )
    return pipeline_row(call, call.resource, experts=ids, notes=notes)


def random_activation(call: RowCall) -> RowImages:
    """The planner over random experts, as many of each kind as the ESA selected."""
    bench = call.bench
    selected = bench.usable(call.case.selection.expert_ids)
    rng = random.Random(call.case.seed)
    ids = []
    for kind in ("ckpt", "peft"):
        pool = [e.id for e in bench.pool if e.kind.value == kind]
        count = sum(e.kind.value == kind for e in selected)
        ids += rng.sample(pool, min(count, len(pool)))
    return pipeline_row(call, call.resource, experts=ids)


# -- resources ---------------------------------------------------------------------------


def variant_resource(variant: str) -> Resource:
    """The planner of a variant (evals.variants), from its checkpoint or trained here."""

    def build(bench: Bench) -> Prepared:
        from evals.variants import load_variant

        loaded = load_variant(
            variant,
            bench.pipeline.settings,
            bench.pipeline.graph,
            bench.pool,
            bench.checkpoints.get(variant),
            bench.train_steps,
            bench.train_prompts,
            bench.out_dir / "planners",
        )
        return Prepared(loaded.planner, loaded.source, loaded.demo)

    return Resource(f"planner:{variant}", build)


def _llm_planner(bench: Bench) -> Prepared:
    from planner.loading import make_planner

    settings = bench.pipeline.settings
    planner = make_planner("llm", settings, bench.pipeline.graph)
    planner.tracer = bench.tracer  # its LLM calls go into the benchmark's trace
    if planner.model is None:
        return Prepared(planner, "no LLM configured (no-LLM mode): equal weights")
    return Prepared(planner, f"LLM {settings.llm.model} at {settings.llm.base_url}")


def _autolora(bench: Bench) -> Prepared:
    """AutoLoRA's weight-encoder retriever, once its encoder and fusion gates are trained."""
    from tools.autolora.checkpoint import load_gates
    from tools.autolora.paths import encoder_path, fusion_path
    from tools.autolora.retrieval import make_retriever

    settings = bench.pipeline.settings
    path = fusion_path(settings)
    if not path.is_file():  # untrained gates would not be AutoLoRA
        raise BenchmarkError(
            f"no AutoLoRA fusion gates at {path}: train them with `diffgraph train-autolora "
            "fusion`, or set autolora.fusion_checkpoint"
        )
    retriever = make_retriever(settings, bench.pipeline.graph)  # explains a missing encoder
    demo = retriever.record.demo or load_gates(path)[1].demo
    source = f"AutoLoRA encoder {encoder_path(settings)}, fusion gates {path}"
    if demo:
        source += " (trained on DEMO data)"
    return Prepared(retriever, source, demo)


def autolora_top(k: int) -> MethodFn:
    """AutoLoRA: the k LoRAs nearest the prompt by weight embedding, gated-fused."""

    def run(call: RowCall) -> RowImages:
        bench, retriever = call.bench, call.resource
        query = bench.pipeline.graph.embedder.embed_one(call.case.text)
        hits = retriever.search(query, k, bench.pipeline.generator.family)
        row = pipeline_row(call, _equal(), experts=[e.id for e, _ in hits], fusion="gated")
        similarity = ", ".join(f"{e.id} {s:.3f}" for e, s in hits)
        row.notes.append(f"retrieved by weight embedding (cosine): {similarity or 'none'}")
        if len(hits) < k:
            row.notes.append(f"only {len(hits)} LoRA(s) could be retrieved")
        if retriever.note:
            row.notes.append(retriever.note)
        return row

    return run


def esa_gated(call: RowCall) -> RowImages:
    """The ESA's selection with AutoLoRA's gated fusion instead of the planner's merge."""
    return pipeline_row(call, _equal(), fusion="gated")


LLM = Resource("planner:llm", _llm_planner)
FULL = variant_resource("full")
AUTOLORA = Resource("autolora", _autolora)

for _method in (
    Method("direct", "Direct (base model)", "method", direct, "the base model, no experts"),
    Method("equal", "Equal merge", "method", equal, "selected experts, equal weights"),
    Method("random", "Random merge", "method", random_merge, "selected, random coefficients"),
    Method("llm", "LLM weights", "method", planned, "selected, LLM-proposed coefficients", LLM),
    Method("dare", "DARE", "method", dare, "selected experts, DARE merge (equal weights)"),
    Method("ties", "TIES", "method", ties, "selected experts, TIES merge (equal weights)"),
    Method(
        "klora",
        "K-LoRA-style",
        "method",
        klora,
        "selected experts, per layer the LoRA with the largest top-k magnitudes, whole",
    ),
    Method(
        "retrieval-single",
        "Best single expert (retrieval)",
        "method",
        retrieval_single,
        "the expert nearest the prompt by description embedding, alone",
    ),
    Method(
        "oracle-single",
        "Oracle single expert (gold)",
        "method",
        oracle_single,
        "the prompt's first gold expert alone (labelled prompts only)",
    ),
    Method(
        "ours-fixed",
        "Ours fixed",
        "method",
        fixed,
        "the planner over a fixed set (the prompt's gold set when labelled)",
        FULL,
    ),
    Method("diffgraph", "DiffGraph", "method", planned, "selection + learned planner", FULL),
    Method("no-esa", "w/o ESA", "ablation", without_esa, "the planner, no selection", FULL),
    Method(
        "random-activation",
        "Random activation",
        "ablation",
        random_activation,
        "the planner over random experts",
        FULL,
    ),
):
    register(_method)

ABLATION_VARIANTS = {
    "no-registration": "w/o registration",
    "no-calibration": "w/o calibration",
    "learnable-experts": "Learnable expert features",
    "learnable-edges": "Learnable edge features",
    "parameters": "Parameter-based expert features",
}
for _name, _label in ABLATION_VARIANTS.items():
    register(
        Method(
            _name,
            _label,
            "ablation",
            planned,
            f"selection + the {_name} planner ({VARIANTS[_name]})",
            variant_resource(_name),
        )
    )

for _k in (1, 2, 3):
    register(
        Method(
            f"autolora-top{_k}",
            f"AutoLoRA top-{_k} + gated fusion",
            "method",
            autolora_top(_k),
            f"the {_k} LoRAs nearest the prompt by weight embedding, gated fusion",
            AUTOLORA,
        )
    )
register(
    Method("esa-gated", "ESA + gated fusion", "method", esa_gated, "selected, gated", AUTOLORA)
)

DEFAULT_METHODS = ["direct", "equal", "random", "llm", "dare", "ties", "ours-fixed", "diffgraph"]
