"""``diffgraph generate``: one prompt end to end."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from graph.console import console, print_json
from graph.errors import DiffGraphError
from tools.generation.request import MAX_SIDE, MIN_SIDE
from tools.seed_option import seed_option

_SIZE = re.compile(r"(\d{1,9})(?:x(\d{1,9}))?")


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)


def parse_size(size: str | None) -> tuple[int | None, int | None]:
    """``WIDTHxHEIGHT`` (or one side for a square) as integers; None when not given."""
    if size is None:
        return None, None
    match = _SIZE.fullmatch(size.strip().lower())
    if match is None:
        raise DiffGraphError(
            f"--size {size!r}: expected WIDTHxHEIGHT or one side for a square, e.g. 512x768 or 512"
        )
    width = int(match[1])
    height = int(match[2] or width)
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise DiffGraphError(
            f"--size {size}: each side must be from {MIN_SIDE} to {MAX_SIDE} pixels"
        )
    return width, height


def check_size(settings, width: int | None, height: int | None) -> None:
    """Refuse a size the base model's family cannot draw, reading only the model's config
    (the family), not its weights."""
    if width is None or settings.base_model is None or not settings.base_model.exists():
        return  # loading the model says what is wrong with it
    from tools.generation.loading import detect_family
    from tools.generation.request import GenerationRequest

    request = GenerationRequest(prompts=["x"], width=width, height=height)
    request.size(detect_family(settings.base_model, settings.allow_pickle))


def generate(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="what to draw (A1111 syntax welcome)")],
    seed: Annotated[int, seed_option()] = 0,
    out: Annotated[Path, typer.Option(help="folder for images, recipe, exports")] = Path("out"),
    experts: Annotated[
        str | None, typer.Option(help="comma-separated expert ids: plan over exactly these")
    ] = None,
    planner: Annotated[
        str, typer.Option(help="learned (default; equal if none trained), equal, random or llm")
    ] = "learned",
    images: Annotated[int, typer.Option(min=1, max=16, help="images per prompt")] = 1,
    steps: Annotated[int | None, typer.Option(min=1, max=500)] = None,
    guidance: Annotated[float | None, typer.Option(min=0.0, max=50.0)] = None,
    size: Annotated[str | None, typer.Option(help="WIDTHxHEIGHT")] = None,
    negative: Annotated[str, typer.Option(help="negative prompt")] = "",
    fusion: Annotated[
        str, typer.Option(help="merge (the paper) or gated (AutoLoRA gates in the forward pass)")
    ] = "merge",
    save_merged: Annotated[
        Path | None, typer.Option(help="also write the merged model as one .safetensors")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Select experts, plan their coefficients, merge exactly and generate."""
    from agents.pipeline.context import build_context
    from agents.pipeline.pipeline import GenerateOptions, merge_plan, run

    if planner not in ("learned", "equal", "random", "llm"):
        raise DiffGraphError(f"--planner {planner!r}: expected learned, equal, random or llm")
    if fusion not in ("merge", "gated"):
        raise DiffGraphError(f"--fusion {fusion!r}: expected merge or gated")
    from graph.outputs import check_output_dir, check_output_file
    from tools.generation.loading import resolve_device

    width, height = parse_size(size)  # every check before minutes of model loading
    check_output_dir(out, "--out")
    if save_merged is not None:
        check_output_file(save_merged, "--save-merged")
    resolve_device(ctx.obj.device)
    check_size(ctx.obj, width, height)
    options = GenerateOptions(
        fusion=fusion,
        seed=seed,
        steps=steps,
        guidance=guidance,
        width=width,
        height=height,
        negative_prompt=negative,
        images=images,
        experts=[e.strip() for e in experts.split(",") if e.strip()] if experts else None,
    )
    context = build_context(ctx.obj, planner=planner)
    if not as_json:  # sampling takes a while: show its steps (on a terminal only)
        context.generator.pipe.set_progress_bar_config(desc="sampling", leave=False, disable=None)
    try:
        outcome = run(prompt, context, options, out)
        merged = None
        if save_merged is not None:
            from tools.weights.stream import merge_to_file

            plan = merge_plan(outcome.recipe, base=ctx.obj.base_model)
            if plan is None:
                raise DiffGraphError("no expert was merged: there is no merged model to save")
            merged = merge_to_file(plan, save_merged, allow_pickle=ctx.obj.allow_pickle).output
    finally:
        context.graph.close()
    recipe = outcome.recipe
    if as_json:
        print_json(
            {
                "recipe": recipe,
                "images": outcome.image_paths,
                "recipe_path": outcome.recipe_path,
                "trace": outcome.trace_path,
                "merged_model": merged,
            }
        )
        return
    console.print(f"[bold]{recipe.final_prompt}[/]")
    for expert in recipe.checkpoints + recipe.loras:
        console.print(
            f"  {expert.kind:4} {expert.expert_id:32} coefficient {expert.coefficient:.3f}  "
            f"merge weight {expert.merge_weight:.3f}"
        )
    if not recipe.checkpoints:
        console.print(f"  ckpt {'(base model)':32} {recipe.base_model or ''}")
    for note in recipe.notes:
        console.print(f"  [yellow]note:[/] {note}")
    console.print(f"images: {', '.join(str(p) for p in outcome.image_paths)}")
    console.print(f"recipe: {outcome.recipe_path} (+ .a1111.txt, .comfyui.json)")
    if merged:
        console.print(f"merged model: {merged}")
    console.print(f"trace: {outcome.trace_path}")
