"""One prompt end to end: selection → planner → exact merge → images, recipe, trace."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from agents.pipeline.errors import PipelineError
from agents.pipeline.export import to_a1111, to_comfyui
from agents.pipeline.outputs import Writer, png_writer, text_writer, write_all
from agents.pipeline.recipe import Recipe, RecipeExpert
from agents.pipeline.verify import hash_cache, verified
from graph.records import Expert, ExpertKind, ExpertStatus

if TYPE_CHECKING:
    from agents.selection.result import SelectionResult
    from agents.selection.state import SelectionContext
    from graph.universal import UniversalGraph
    from planner.planners import Planner, PlanResult
    from tools.generation.generator import Generator
    from tools.settings import Settings


AGENT = "generate"


class GenerateOptions(BaseModel):
    """What the user may set per generation (the rest comes from settings)."""

    seed: int = Field(0, ge=0)
    steps: int | None = Field(None, ge=1, le=500)
    guidance: float | None = Field(None, ge=0.0, le=50.0)
    width: int | None = None
    height: int | None = None
    negative_prompt: str = ""
    images: int = Field(1, ge=1, le=16)
    experts: list[str] | None = Field(
        None, description="plan over exactly these experts (no selection: 'Ours fixed')"
    )
    pinned: list[str] = Field(default_factory=list, description="always merge these")
    banned: list[str] = Field(default_factory=list, description="never merge these")
    max_loras: int | None = Field(None, ge=0)
    method: str = Field("diffgraph", description="merge method (tools.weights.methods.REGISTRY)")
    method_params: dict[str, Any] = Field(default_factory=dict, description="its parameters")
    fusion: Literal["merge", "gated"] = Field(
        "merge", description="merge: LoRAs merged into the weights; gated: AutoLoRA gates"
    )


@dataclass
class PipelineContext:
    """Loaded components; build once and reuse across prompts (the chat does)."""

    settings: Settings
    graph: UniversalGraph
    selection: SelectionContext
    planner: Planner
    generator: Generator
    notes: list[str] = field(default_factory=list)


class Outcome(BaseModel):
    """What one generation produced and where it was written."""

    model_config = {"arbitrary_types_allowed": True}

    recipe: Recipe
    selection: Any = None
    plan: Any = None
    image_paths: list[Path]
    recipe_path: Path
    trace_path: Path | None = None


def run(
    prompt: str,
    ctx: PipelineContext,
    options: GenerateOptions,
    out_dir: Path,
    selection: SelectionResult | None = None,
) -> Outcome:
    """Generate for ``prompt``; write images, ``recipe.json``, A1111 and ComfyUI exports.

    ``selection``: the selection agent's result for this prompt, made earlier and reused
    instead of selecting again (the benchmark plans several ways over one selection).
    """
    from tools.tracing import TraceWriter

    tracer = TraceWriter.from_settings(ctx.settings, AGENT)
    tracer.run_start({"prompt": prompt, "options": options.model_dump(mode="json")})
    try:
        outcome = _run(prompt, ctx, options, Path(out_dir), tracer, selection)
    except BaseException as exc:
        tracer.event("run_end", error=exc)
        tracer.close()
        raise
    tracer.run_end(
        {"recipe": outcome.recipe.model_dump(mode="json"), "images": outcome.image_paths},
        mode=outcome.recipe.selection_mode if outcome.recipe.selection_mode != "fixed" else None,
        demo=outcome.recipe.demo,
    )
    return outcome.model_copy(update={"trace_path": tracer.path})


def _run(
    prompt: str, ctx: PipelineContext, options: GenerateOptions, out_dir: Path, tracer, selection
):
    from tools.generation.request import GenerationRequest

    with tracer.span("select", {"prompt": prompt}) as span:
        selection, experts, mode = _choose(prompt, ctx, options, selection)
        span["outputs"] = {
            "experts": [e.id for e in experts],
            "mode": mode,
            "selection_run": selection.run_id if selection else None,
        }
    notes = list(ctx.notes)
    experts, missing = _with_weights(experts)
    if missing and options.experts is not None:
        raise PipelineError(
            f"expert(s) {', '.join(missing)} of --experts have no local weights file, so "
            "nothing of them would be merged. Fix: download them first (`diffgraph crawl`), "
            "or leave them out of --experts"
        )
    if missing:
        notes.append(f"skipped (no local weights): {', '.join(missing)}")
    experts = verified(experts, ctx.settings.data_dir)
    with tracer.span("plan", {"experts": [e.id for e in experts]}) as span:
        plan = _plan(prompt, ctx, experts, selection)
        span["outputs"] = plan.model_dump(mode="json") if plan else None
    recipe = _recipe(prompt, ctx, options, experts, plan, mode, notes)
    if options.fusion == "gated":
        recipe = recipe.model_copy(update={"fusion": "gated"})
    request = GenerationRequest(
        prompts=[prompt if selection is None else selection.text],
        negative_prompt=recipe.negative_prompt,
        images_per_prompt=options.images,
        steps=recipe.steps,
        guidance=recipe.guidance,
        width=options.width,
        height=options.height,
        seed=options.seed,
    )
    triggers = [w for e in recipe.loras for w in e.trigger_words]
    with tracer.span("generate", {"request": request.model_dump(mode="json")}) as span:
        result, fusion_notes = _generate(ctx, recipe, request, triggers, experts)
        span["outputs"] = {"images": int(result.images.shape[0]), "demo": result.demo}
    recipe = recipe.model_copy(
        update={
            "final_prompt": result.prompts[0],
            "run_id": tracer.run_id,
            "notes": recipe.notes + fusion_notes,
            "demo": recipe.demo or result.demo,
        }
    )
    return _write(out_dir, recipe, result, selection, plan)


def _generate(ctx: PipelineContext, recipe: Recipe, request, triggers, experts):
    """Images with the recipe's merge, or with its LoRAs fused by AutoLoRA's gates."""
    if recipe.fusion == "merge":
        return ctx.generator.generate(request, merge_plan(recipe), trigger_words=triggers), []
    from tools.autolora.generate import generate_gated
    from tools.autolora.paths import fusion_path

    checkpoints = merge_plan(recipe.model_copy(update={"loras": []}))
    by_id = {e.id: e for e in experts}
    loras = [by_id[e.expert_id] for e in recipe.loras]
    gates = fusion_path(ctx.settings)
    note = (
        f"LoRAs fused in the forward pass by AutoLoRA gates ({gates})"
        if gates.is_file()
        else "LoRAs fused by untrained AutoLoRA gates (plain sum + global LoRA): train them "
        "with `diffgraph train-autolora fusion`"
    )
    result = generate_gated(
        ctx.generator,
        request,
        loras,
        gates if gates.is_file() else None,
        checkpoint_plan=checkpoints,
        trigger_words=triggers,
    )
    return result, [note, "A1111 / ComfyUI exports approximate gated fusion by a plain merge"]


def _choose(prompt: str, ctx: PipelineContext, options: GenerateOptions, selection=None):
    """The experts to merge: a fixed list, or the selection agent's (with pins and bans)."""
    from agents.selection.graph import select

    graph = ctx.graph
    if options.experts is not None:
        return None, _active(graph, options.experts, ctx), "fixed"
    if selection is None:
        selection = select(prompt, fresh_selection_context(ctx))
    banned = set(options.banned)
    ids = [i for i in selection.expert_ids if i not in banned]
    ids += [i for i in options.pinned if i not in ids]
    experts = _active(graph, ids, ctx)
    if options.max_loras is not None:  # pinned LoRAs count against the bound but stay
        pinned = [e for e in experts if e.kind is ExpertKind.PEFT and e.id in options.pinned]
        others = [e for e in experts if e.kind is ExpertKind.PEFT and e not in pinned]
        loras = pinned + others[: max(options.max_loras - len(pinned), 0)]
        experts = [e for e in experts if e.kind is ExpertKind.CKPT or e in loras]
    return selection, experts, selection.mode


def fresh_selection_context(ctx: PipelineContext) -> SelectionContext:
    """The selection context with a trace writer of its own: one trace file per run, also
    when the context serves many prompts (chat, benchmark)."""
    from dataclasses import replace

    from agents.selection.graph import AGENT as SELECTION
    from tools.tracing import TraceWriter

    if ctx.selection.tracer is None:
        return ctx.selection
    return replace(ctx.selection, tracer=TraceWriter.from_settings(ctx.settings, SELECTION))


def _active(graph, ids: Sequence[str], ctx: PipelineContext) -> list[Expert]:
    family = ctx.generator.family
    experts = graph.store.experts(ids=list(ids))
    for expert in experts:
        if expert.status is not ExpertStatus.ACTIVE:
            raise PipelineError(
                f"expert {expert.id!r} is deprecated: choose its newer version "
                f"({expert.superseded_by or 'see `diffgraph graph show`'})"
            )
        if expert.base != family:
            raise PipelineError(
                f"expert {expert.id!r} is for {expert.base.value} but the loaded base model is "
                f"{family.value}: choose experts of {family.value} or another base model"
            )
    return experts


def _with_weights(experts: list[Expert]) -> tuple[list[Expert], list[str]]:
    usable, missing = [], []
    for expert in experts:
        if expert.file and expert.file.path and Path(expert.file.path).is_file():
            usable.append(expert)
        else:
            missing.append(expert.id)
    return usable, missing


def _plan(prompt: str, ctx: PipelineContext, experts: list[Expert], selection) -> PlanResult | None:
    from planner.planners import PlanRequest

    if not experts:
        return None
    text = selection.text if selection is not None else prompt
    prompt_x = ctx.graph.embedder.embed_one(text)
    import torch

    request = PlanRequest(
        prompt=text,
        prompt_x=torch.from_numpy(prompt_x),
        subgraph=ctx.graph.subgraph([e.id for e in experts]),
    )
    return ctx.planner.plan(request)


def _recipe(prompt, ctx, options, experts, plan, mode, notes) -> Recipe:
    gen = ctx.settings.generation
    by_id = {e.id: e for e in experts}
    planned = {p.expert_id: p for p in plan.experts} if plan else {}

    def item(expert: Expert) -> RecipeExpert:
        p = planned[expert.id]
        return RecipeExpert(
            expert_id=expert.id,
            name=expert.name,
            kind=expert.kind.value,
            coefficient=p.coefficient,
            merge_weight=p.merge_weight,
            trigger_words=expert.trigger_words if expert.kind is ExpertKind.PEFT else [],
            path=expert.file.path,
            sha256=expert.file.sha256,
            addnet_hash=_addnet_hash(expert.file.path) if expert.kind is ExpertKind.PEFT else None,
        )

    checkpoints = [item(by_id[i]) for i in planned if by_id[i].kind is ExpertKind.CKPT]
    loras = [item(by_id[i]) for i in planned if by_id[i].kind is ExpertKind.PEFT]
    width, height = _size(ctx, options)
    demo = ctx.generator.demo or any(e.demo for e in experts) or bool(plan and plan.demo)
    if ctx.generator.demo:
        notes.append("images come from a demo pipeline with tiny random weights")
    if mode == "no-llm":
        notes.append("experts chosen by the deterministic no-LLM policy")
    if plan is not None:
        notes += plan.notes
    sampler, schedule_type = ctx.generator.sampler
    base = ctx.settings.base_model
    return Recipe(
        prompt=prompt,
        final_prompt=prompt,
        negative_prompt=options.negative_prompt or gen.negative_prompt,
        seed=options.seed,
        steps=options.steps or gen.steps,
        guidance=options.guidance if options.guidance is not None else gen.guidance,
        sampler=sampler,
        schedule_type=schedule_type,
        width=width,
        height=height,
        family=ctx.generator.family.value,
        noise_device=getattr(ctx.generator, "noise_device", None),
        base_model=str(base) if base else None,
        base_model_sha256=None if checkpoints else _file_hash(ctx, base),
        checkpoints=checkpoints,
        loras=loras,
        method=options.method,
        method_params=options.method_params,
        planner=plan.planner if plan else "none",
        selection_mode=mode,
        demo=demo,
        notes=list(dict.fromkeys(notes)),
    )


def _file_hash(ctx: PipelineContext, path: Path | None) -> str | None:
    """SHA-256 of a single-file model (A1111's ``Model hash``), cached across runs."""
    if path is None or not Path(path).is_file():
        return None
    cache = hash_cache(ctx.settings.data_dir)
    try:
        return cache.sha256(Path(path))
    finally:
        cache.close()


def _addnet_hash(path: str | None) -> str | None:
    from tools.weights.files import addnet_hash

    if not path or Path(path).suffix.lower() != ".safetensors" or not Path(path).is_file():
        return None
    return addnet_hash(Path(path))


def _size(ctx: PipelineContext, options: GenerateOptions) -> tuple[int, int]:
    from tools.generation.request import GenerationRequest

    request = GenerationRequest(prompts=["x"], width=options.width, height=options.height)
    return request.size(ctx.generator.family)


def merge_plan(recipe: Recipe, base: Path | None = None):
    """The weights toolkit's plan of a recipe: the planner's coefficients, softmax within
    each kind; ``base`` is needed to write a LoRA-only merge to a file."""
    from tools.weights.plan import MergePlan, WeightedExpert

    def weighted(items: list[RecipeExpert]) -> list[WeightedExpert]:
        return [
            WeightedExpert(
                path=Path(e.path), coefficient=e.coefficient, name=e.name, expert_id=e.expert_id
            )
            for e in items
        ]

    if not recipe.checkpoints and not recipe.loras:
        return None
    return MergePlan(
        checkpoints=weighted(recipe.checkpoints),
        loras=weighted(recipe.loras),
        method=recipe.method,
        normalize=recipe.normalize,
        params=recipe.method_params,
        base=base,
    )


def save_images(images, out_dir: Path, stem: str, parameters: str | None = None) -> list[Path]:
    """``[N, 3, H, W]`` images in [0, 1] as ``<stem>-<i>.png`` (``parameters``: the A1111
    prompt text stored in each PNG), all or none."""
    return write_all(out_dir, _png_writers(images, stem, parameters))


def _png_writers(images, stem: str, parameters: str | None) -> dict[str, Writer]:
    return {f"{stem}-{i}.png": png_writer(image, parameters) for i, image in enumerate(images)}


def image_stem(prompt: str, seed: int) -> str:
    """The file-name stem of a prompt's images, recipe and exports."""
    return f"{_slug(prompt)}-s{seed}"


def _write(out_dir: Path, recipe: Recipe, result, selection, plan) -> Outcome:
    stem = image_stem(recipe.prompt, recipe.seed)
    images = _png_writers(result.images, stem, to_a1111(recipe))
    recipe = recipe.model_copy(update={"images": list(images)})
    recipe_path = out_dir / f"{stem}.recipe.json"
    write_all(
        out_dir,
        {
            **images,
            recipe_path.name: text_writer(recipe.model_dump_json(indent=2)),
            f"{stem}.a1111.txt": text_writer(to_a1111(recipe) + "\n"),
            f"{stem}.comfyui.json": text_writer(json.dumps(to_comfyui(recipe), indent=2)),
        },
    )
    return Outcome(
        recipe=recipe,
        selection=selection,
        plan=plan,
        image_paths=[out_dir / name for name in images],
        recipe_path=recipe_path,
    )


def _slug(text: str, limit: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].rstrip("-") or "image"
