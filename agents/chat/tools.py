"""The chat's tools: expert checks against the graph, generation through the end-to-end
pipeline, and saving a result where the user wants it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.chat.errors import ChatError
from agents.chat.result import SavedFiles
from agents.chat.state import ChatContext, Conversation, Generation
from graph.errors import UnknownExpertError
from graph.records import ExpertStatus

if TYPE_CHECKING:
    from tools.settings import Settings

# /save names that are files, not folders (a ``.safetensors`` one is the merged model's)
_FILE_SUFFIXES = {".ckpt", ".pt", ".bin", ".png", ".jpg", ".jpeg", ".webp", ".json", ".txt"}


def expert_problem(ctx: ChatContext, expert_id: str, *, mergeable: bool) -> str | None:
    """Why ``expert_id`` cannot be pinned (``mergeable``) or banned here; None if it can."""
    try:
        expert = ctx.pipeline.graph.store.expert(expert_id)
    except UnknownExpertError:
        return f"no expert {expert_id!r} in the graph: copy an id from /show"
    if not mergeable:
        return None
    family = ctx.pipeline.generator.family
    if expert.status is not ExpertStatus.ACTIVE:
        newer = expert.superseded_by or "see `diffgraph graph show`"
        return f"expert {expert_id!r} is deprecated: pin its newer version ({newer})"
    if expert.base != family:
        return (
            f"expert {expert_id!r} is for {expert.base.value} but the loaded base model is "
            f"{family.value}: pin an expert of {family.value}"
        )
    if not (expert.file and expert.file.path and Path(expert.file.path).is_file()):
        return f"expert {expert_id!r} has no weights file on this machine: download it first"
    return None


def generate(
    ctx: ChatContext, conversation: Conversation, turn: int, selection: dict[str, Any] | None
) -> tuple[Generation, dict[str, Any] | None]:
    """Run the end-to-end pipeline on the conversation's prompt, pins, bans, seed and bound.

    ``selection`` (the last turn's, as JSON) is reused when it was made for the same prompt:
    pins, bans, bound and seed apply after selection, so only a new prompt selects again.
    Returns the generation and the selection it used.
    """
    from agents.pipeline.pipeline import run
    from agents.selection.result import SelectionResult

    if not conversation.prompt:
        raise ChatError("there is no prompt to draw yet: write one")
    options = ctx.options.model_copy(
        update={
            "seed": conversation.seed,
            "pinned": conversation.pinned,
            "banned": conversation.banned,
            "max_loras": conversation.max_loras,
        }
    )
    reused = None
    if selection is not None and selection.get("prompt") == conversation.prompt:
        reused = SelectionResult.model_validate(selection)
    out_dir = ctx.out_dir / conversation.thread / f"turn-{turn:03d}"
    outcome = run(conversation.prompt, ctx.pipeline, options, out_dir, selection=reused)
    generation = Generation(
        turn=turn,
        recipe=outcome.recipe,
        images=outcome.image_paths,
        recipe_path=outcome.recipe_path,
        trace_path=outcome.trace_path,
        reused_selection=reused is not None,
    )
    used = outcome.selection.model_dump(mode="json") if outcome.selection is not None else None
    return generation, used


def save(generation: Generation, folder: Path, settings: Settings, merged: bool) -> SavedFiles:
    """Copy the images, write the recipe and its A1111 / ComfyUI exports and, if ``merged``,
    the merged model (one ``.safetensors``) into ``folder``; every file is written atomically.

    A ``folder`` named ``*.safetensors`` (and not an existing folder) is the merged model's
    file: the model is written there and the rest beside it.
    """
    from agents.pipeline.export import to_a1111, to_comfyui
    from agents.pipeline.pipeline import merge_plan
    from tools.weights.files import atomic_path

    model_file = None
    suffix = folder.suffix.lower()
    if suffix == ".safetensors" and not folder.is_dir():
        model_file, folder, merged = folder, folder.parent, True
    elif suffix in _FILE_SUFFIXES and not folder.is_dir():
        raise ChatError(
            f"/save {folder.name}: expected a folder (or NAME.safetensors for the merged "
            "model), not a file name: e.g. /save out/castle"
        )
    recipe = generation.recipe
    plan = merge_plan(recipe, base=settings.base_model) if merged else None
    if merged and plan is None:
        raise ChatError(
            "the last image merged no expert, so there is no merged model to save: it is the "
            f"base model ({recipe.base_model}); save without --merged"
        )
    missing = [str(p) for p in generation.images if not p.is_file()]
    if missing:
        raise ChatError(
            f"the last image file {missing[0]} no longer exists: draw it again (/seed "
            f"{recipe.seed}) before saving"
        )
    stem = generation.recipe_path.name.removesuffix(".recipe.json")
    texts = {
        f"{stem}.recipe.json": recipe.model_dump_json(indent=2),
        f"{stem}.a1111.txt": to_a1111(recipe) + "\n",
        f"{stem}.comfyui.json": json.dumps(to_comfyui(recipe), indent=2),
    }
    files = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for image in generation.images:
            with atomic_path(folder / image.name) as tmp:
                shutil.copyfile(image, tmp)
            files.append(folder / image.name)
        for name, text in texts.items():
            with atomic_path(folder / name) as tmp:
                tmp.write_text(text, encoding="utf-8")
            files.append(folder / name)
        merged_model = None
        if plan is not None:
            from tools.weights.stream import merge_to_file

            target = model_file or folder / f"{stem}.merged.safetensors"
            merged_model = merge_to_file(plan, target, allow_pickle=settings.allow_pickle).output
    except OSError as exc:
        raise ChatError(
            f"could not save into {folder}: {exc.strerror or exc}; choose a writable folder "
            "with free space (/save DIR)"
        ) from exc
    return SavedFiles(folder=folder, files=files, merged_model=merged_model)
