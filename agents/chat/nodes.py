"""Nodes of the conversation graph; each returns a partial state update.

interpret (slash command, LLM decision or no-LLM rules) → apply (prompt, pins, bans, seed,
LoRA bound) → generate when something changed; or → save; every turn ends in finish.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from langgraph.runtime import Runtime

from agents.chat import policy, prompts, tools
from agents.chat.errors import ChatError
from agents.chat.schemas import MAX_PROMPT_CHARS, TurnDecision
from agents.chat.state import ChatContext, ChatState, Conversation
from tools.llm import structured_call

Update = dict[str, Any]


def _node(fn: Callable[[ChatState, ChatContext], Update]) -> Callable:
    """Run ``fn`` with the injected context and trace it as a ``node`` event."""

    def run(state: ChatState, runtime: Runtime[ChatContext]) -> Update:
        ctx = runtime.context
        if ctx.tracer is None:
            return fn(state, ctx)
        inputs = {"request": state.get("request"), "decision": state.get("decision")}
        with ctx.tracer.span(fn.__name__, inputs) as span:
            update = fn(state, ctx)
            span["outputs"] = update
            span["mode"] = update.get("mode")
        return update

    # no functools.wraps: LangGraph finds ``runtime`` in the wrapper's own signature
    run.__name__ = run.__qualname__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


def _decision(state: ChatState) -> TurnDecision:
    return TurnDecision.model_validate(state["decision"])


# -- interpret ---------------------------------------------------------------------------


@_node
def interpret(state: ChatState, ctx: ChatContext) -> Update:
    """Read the message: a slash command, else the LLM's decision, else the no-LLM rules."""
    text = (state.get("request") or "").strip()
    if not text:
        raise ChatError("the message is empty: write a prompt, a refinement or a command (/help)")
    if len(text) > MAX_PROMPT_CHARS:
        raise ChatError(f"the message has {len(text)} characters: write at most {MAX_PROMPT_CHARS}")
    conversation = Conversation.of(state)
    decision = policy.parse_command(text)
    mode = None
    if decision is not None:
        interpreter = "command"
    elif ctx.model is None:
        decision, interpreter, mode = policy.decide(text, conversation.prompt), "rules", "no-llm"
    else:
        result = structured_call(
            ctx.model,
            TurnDecision,
            prompts.decision_messages(conversation, state.get("history") or [], text),
            fallback=lambda: policy.decide(text, conversation.prompt),
            tracer=ctx.tracer,
            node="interpret",
            max_retries=ctx.llm.max_schema_retries,
            method=ctx.llm.structured_method,
            check=lambda d: check_decision(d, text, conversation, ctx),
        )
        decision, mode = result.value, result.mode
        interpreter = "llm" if mode == "llm" else "fallback"
    return {
        "turn": 1,
        "decision": decision.model_dump(mode="json"),
        "interpreter": interpreter,
        "mode": mode,
        "changes": [],
        "notes": [],
        "error": None,
        "generated": False,
        "saved": None,
        "done": decision.action == "quit",
    }


def check_decision(
    decision: TurnDecision, message: str, conversation: Conversation, ctx: ChatContext
) -> None:
    """Reject an LLM decision that cannot be acted on (``ValueError``: it is retried)."""
    action = decision.action
    if action in ("new_prompt", "refine") and not decision.prompt:
        raise ValueError(f"action {action} needs the complete image prompt in 'prompt'")
    if action in ("pin", "ban", "unpin", "unban"):
        if not decision.expert_ids:
            raise ValueError(f"action {action} needs the expert ids in 'expert_ids'")
        listed = {"unpin": conversation.pinned, "unban": conversation.banned}.get(action)
        for expert_id in decision.expert_ids:
            if listed is not None:
                if expert_id not in listed:
                    raise ValueError(f"{expert_id!r} is not in the session's {action[2:]}ned list")
            elif problem := tools.expert_problem(ctx, expert_id, mergeable=False):
                raise ValueError(problem)
    if action == "save" and decision.path and decision.path not in message:
        raise ValueError(
            "'path' must be a folder copied exactly from the user's message, or null for the "
            "default folder"
        )


def after_interpret(state: ChatState) -> Literal["apply", "save", "finish"]:
    action = state["decision"]["action"]
    if action == "save":
        return "save"
    return "finish" if action in ("show", "help", "quit") else "apply"


# -- apply -------------------------------------------------------------------------------


@_node
def apply(state: ChatState, ctx: ChatContext) -> Update:
    """Update the prompt, pins, bans, seed or LoRA bound as the decision asks."""
    decision, conversation = _decision(state), Conversation.of(state)
    handler = {
        "new_prompt": _prompt,
        "refine": _prompt,
        "fewer_experts": _bound,
        "more_experts": _bound,
        "set_loras": _bound,
        "pin": _pins,
        "ban": _pins,
        "unpin": _pins,
        "unban": _pins,
        "seed": _seed,
        "redraw": _redraw,
    }[decision.action]
    update = handler(decision, conversation, ctx)
    if update.get("changes") and not (update.get("prompt") or conversation.prompt):
        update.setdefault("notes", []).append("no prompt yet: write one to draw")
    return update


def _prompt(decision: TurnDecision, conversation: Conversation, ctx: ChatContext) -> Update:
    new = decision.prompt or ""
    if not new:
        return {"error": "the prompt would be empty: write what to draw"}
    if new == conversation.prompt:
        return {"notes": ["the prompt is unchanged"]}
    label = "new prompt" if decision.action == "new_prompt" else "prompt"
    return {"prompt": new, "changes": [f"{label}: {new}"]}


def _bound(decision: TurnDecision, conversation: Conversation, ctx: ChatContext) -> Update:
    maximum = ctx.pipeline.selection.settings.max_loras
    current = conversation.max_loras
    last = conversation.last
    if decision.action == "set_loras" or decision.max_loras is not None:
        new = decision.max_loras
    elif decision.action == "fewer_experts":
        used = len(last.recipe.loras) if last else (maximum if current is None else current)
        new = max(used - 1, 0)
    elif current is None:
        return {
            "notes": [
                "no LoRA bound is set: the selection already merges every LoRA that fits (at "
                f"most {maximum}); pin an expert to add it"
            ]
        }
    else:
        new = None if current + 1 >= maximum else current + 1
    if new == current:
        return {"notes": ["the LoRA bound is unchanged"]}
    change = (
        "no LoRA bound: the selection decides"
        if new is None
        else f"at most {new} LoRA{'' if new == 1 else 's'}"
    )
    return {"max_loras": new, "changes": [change]}


def _pins(decision: TurnDecision, conversation: Conversation, ctx: ChatContext) -> Update:
    action = decision.action
    pinned, banned = list(conversation.pinned), list(conversation.banned)
    if action in ("pin", "ban"):
        problems = [
            problem
            for expert_id in decision.expert_ids
            if (problem := tools.expert_problem(ctx, expert_id, mergeable=action == "pin"))
        ]
        if problems:
            return {"error": "; ".join(problems)}
    add, remove = {"pin": (pinned, banned), "ban": (banned, pinned)}.get(action, (None, None))
    source = {"unpin": pinned, "unban": banned}.get(action)
    changes, notes = [], []
    for expert_id in dict.fromkeys(decision.expert_ids):
        if source is not None:
            if expert_id in source:
                source.remove(expert_id)
                changes.append(f"{action}ned {expert_id}")
            else:
                notes.append(f"{expert_id} was not {action[2:]}ned")
        elif expert_id in add:
            notes.append(f"{expert_id} is already {action}ned")
        else:
            add.append(expert_id)
            if expert_id in remove:
                remove.remove(expert_id)
            changes.append(f"{action}ned {expert_id}")
    return {"pinned": pinned, "banned": banned, "changes": changes, "notes": notes}


def _seed(decision: TurnDecision, conversation: Conversation, ctx: ChatContext) -> Update:
    new = decision.seed if decision.seed is not None else conversation.seed + 1
    if new == conversation.seed:
        return {"notes": [f"the seed is already {new}"]}
    return {"seed": new, "changes": [f"seed {new}"]}


def _redraw(decision: TurnDecision, conversation: Conversation, ctx: ChatContext) -> Update:
    return {"changes": ["drawn again"]}


def after_apply(state: ChatState) -> Literal["generate", "finish"]:
    ready = state.get("changes") and state.get("prompt") and not state.get("error")
    return "generate" if ready else "finish"


# -- generate, save, finish --------------------------------------------------------------


@_node
def generate(state: ChatState, ctx: ChatContext) -> Update:
    """Selection → planner → exact merge → images for the conversation's current settings."""
    conversation = Conversation.of(state)
    start = time.perf_counter()
    generation, selection = tools.generate(ctx, conversation, state["turn"], state.get("selection"))
    if ctx.tracer is not None:
        ctx.tracer.tool_call(
            "generate",
            "pipeline.run",
            {"prompt": conversation.prompt, "seed": conversation.seed},
            {"generate_run_id": generation.recipe.run_id, "trace": generation.trace_path},
            (time.perf_counter() - start) * 1000,
        )
    notes = ["same prompt: the last selection was reused"] if generation.reused_selection else []
    return {
        "last": generation.model_dump(mode="json"),
        "selection": selection,
        "generated": True,
        "notes": [*state.get("notes", []), *notes],
    }


@_node
def save(state: ChatState, ctx: ChatContext) -> Update:
    """Write the last result (and, if asked, the merged model) into the chosen folder."""
    decision, conversation = _decision(state), Conversation.of(state)
    if conversation.last is None:
        return {"error": "nothing to save yet: draw an image first"}
    default = ctx.out_dir / conversation.thread / "saved"
    folder = (Path(decision.path).expanduser() if decision.path else default).resolve()
    try:
        saved = tools.save(conversation.last, folder, ctx.pipeline.settings, decision.merged)
    except ChatError as exc:
        return {"error": str(exc)}
    return {"saved": saved.model_dump(mode="json")}


@_node
def finish(state: ChatState, ctx: ChatContext) -> Update:
    """Record the turn in the thread's history."""
    last = state.get("last") if state.get("generated") else None
    entry = {
        "turn": state["turn"],
        "request": state["request"],
        "action": state["decision"]["action"],
        "prompt": state.get("prompt"),
        "generate_run_id": last["recipe"]["run_id"] if last else None,
    }
    return {"history": [entry]}
