"""The deterministic side of the chat: slash commands, and the no-LLM rules that read a
message as an edit of the prompt text.

Rules, in order: "fewer experts" / "more experts" / "at most N loras" change the LoRA
bound; "more X" / "add X" / "make it (more) X" append the phrase X (more emphasis when it is
already there);
"drop X" / "remove X" / "no X" / "without X" remove the prompt's comma-separated phrases
that mention X; anything else is a new prompt.
"""

from __future__ import annotations

import re
import shlex

from agents.chat.errors import ChatError
from agents.chat.schemas import MAX_IDS, MAX_PROMPT_CHARS, TurnDecision

COMMANDS: tuple[tuple[str, str], ...] = (
    ("/prompt TEXT", "draw TEXT as a new prompt (even if it starts with 'more' or 'no')"),
    ("/show", "the prompt, pins, bans, seed, bound and the experts with their coefficients"),
    ("/pin ID [ID ...]", "always merge these experts, then regenerate"),
    ("/ban ID [ID ...]", "never merge these experts, then regenerate"),
    ("/unpin ID [ID ...]", "undo a pin"),
    ("/unban ID [ID ...]", "undo a ban"),
    ("/seed [N]", "use seed N (default: the next seed), then regenerate"),
    ("/redraw", "draw again as it is (after the web UI changed size, steps or coefficients)"),
    ("/loras [N]", "merge at most N LoRAs (no N: the selection decides), then regenerate"),
    (
        "/save [DIR | FILE.safetensors] [--merged]",
        "copy the last image(s), recipe, A1111 and ComfyUI exports to DIR (default "
        "<out>/<thread>/saved); --merged also writes the merged model; FILE.safetensors "
        "writes the merged model there, the rest beside it",
    ),
    ("/help", "this list"),
    ("/quit", "leave; the thread is kept (resume it with --thread ID)"),
)
REFINEMENTS: tuple[tuple[str, str], ...] = (
    ("more X, add X, make it (more) X", "append X to the prompt (already there: more emphasis)"),
    ("drop X, remove X, no X, without X", "remove the prompt's phrases that mention X"),
    ("fewer experts, more experts, at most N loras", "lower / raise / set the LoRA bound"),
    ("anything else", "a new prompt"),
)

_QUIT_WORDS = {"quit", "exit", "bye", ":q"}
_EXPERTS = r"(?:experts?|loras?|models?|adapters?)"
_LEAD = re.compile(r"^(?:(?:please|pls|ok|okay|now|and|also|then|hmm)\b[\s,]*)+", re.I)
_TAIL = re.compile(r"[\s,]*(?:\bplease\b|\bthanks?\b|[.!?])*$", re.I)
_FEWER = re.compile(rf"^(?:use |merge |with )?(?:fewer|less) {_EXPERTS}$", re.I)
_MORE_EXPERTS = re.compile(rf"^(?:use |merge |with )?more {_EXPERTS}$", re.I)
_COUNT = re.compile(
    rf"^(?:use |merge )?(?:only |at most |up to |max(?:imum)? )?(\d+) {_EXPERTS}$", re.I
)
_ADD = re.compile(
    r"^(?:(?:can|could|would) you\s+)?(?:more|add|make (?:it|this|the (?:image|picture|photo|"
    r"scene))(?: look| feel)?(?: a bit| a little| much| even| way)?(?: more)?)\s+(.+)$",
    re.I,
)
_REMOVE = re.compile(r"^(?:drop|remove|no|without|delete)\s+(.+)$", re.I)
_DETERMINER = re.compile(r"^(?:(?:the|a|an|any|all|some|her|his|its|their)\s+)+", re.I)
_GENERIC = re.compile(r"\s+(?:style|look|effect|vibe|feel|aesthetic)s?$", re.I)
_WEIGHTED = re.compile(r"\(\s*(.+?)\s*(?::\s*(-?[0-9]*\.?[0-9]+))?\s*\)")
EMPHASIS_STEP = 0.1


# -- commands ----------------------------------------------------------------------------


def parse_command(text: str) -> TurnDecision | None:
    """The decision of a slash command (or a bare quit word); None for any other message.

    A malformed command raises :class:`ChatError`.
    """
    stripped = text.strip()
    if stripped.lower() in _QUIT_WORDS:
        return TurnDecision(action="quit", reasoning="command")
    if stripped == "?":
        return TurnDecision(action="help", reasoning="command")
    if not stripped.startswith("/"):
        return None
    name, _, rest = stripped[1:].partition(" ")
    name, rest = name.lower(), rest.strip()
    simple = {"show": "show", "help": "help", "quit": "quit", "exit": "quit", "redraw": "redraw"}
    if name in simple:
        return TurnDecision(action=simple[name], reasoning="command")
    if name == "prompt":
        if not rest:
            raise ChatError("/prompt needs the prompt text, e.g. /prompt a castle at dusk")
        return TurnDecision(action="new_prompt", prompt=rest, reasoning="command")
    if name in ("pin", "ban", "unpin", "unban"):
        ids = [i for i in re.split(r"[\s,]+", rest) if i]
        if not ids or len(ids) > MAX_IDS:
            raise ChatError(
                f"/{name} needs 1 to {MAX_IDS} expert ids, got {len(ids)}: e.g. /{name} "
                "lora-red-hair (see /show)"
            )
        return TurnDecision(action=name, expert_ids=ids, reasoning="command")
    if name == "seed":
        return TurnDecision(action="seed", seed=_number(name, rest), reasoning="command")
    if name == "loras":
        bound = None if rest.lower() in ("", "auto") else _number(name, rest, 32)
        return TurnDecision(action="set_loras", max_loras=bound, reasoning="command")
    if name == "save":
        return _save_command(rest)
    known = ", ".join(usage.split()[0] for usage, _ in COMMANDS)
    raise ChatError(f"unknown command /{name}: expected one of {known} (type /help)")


def _number(command: str, text: str, maximum: int = 2**62 - 1) -> int | None:
    if not text:
        return None
    if not text.isdigit() or int(text) > maximum:
        raise ChatError(
            f"/{command} {text!r}: expected a whole number from 0 to {maximum}, e.g. /{command} 3"
        )
    return int(text)


def _save_command(rest: str) -> TurnDecision:
    try:
        words = shlex.split(rest)
    except ValueError as exc:
        raise ChatError(f"/save {rest!r}: {exc}; quote a folder with spaces") from exc
    merged = any(w in ("--merged", "merged") for w in words)
    paths = [w for w in words if w not in ("--merged", "merged")]
    if len(paths) > 1:
        raise ChatError(f"/save takes one folder, got {len(paths)}: quote a folder with spaces")
    return TurnDecision(
        action="save", path=paths[0] if paths else None, merged=merged, reasoning="command"
    )


# -- free text ---------------------------------------------------------------------------


def decide(text: str, prompt: str | None) -> TurnDecision:
    """The no-LLM reading of a free-text message, given the current prompt."""
    body = _TAIL.sub("", _LEAD.sub("", " ".join(text.split())))
    if _FEWER.match(body):
        return TurnDecision(action="fewer_experts", reasoning="rule: fewer experts")
    if _MORE_EXPERTS.match(body):
        return TurnDecision(action="more_experts", reasoning="rule: more experts")
    if count := _COUNT.match(body):
        return TurnDecision(
            action="set_loras", max_loras=min(int(count[1]), 32), reasoning="rule: LoRA count"
        )
    added = _ADD.match(body)
    if added and not prompt:
        return TurnDecision(
            action="new_prompt", prompt=added[1], reasoning="rule: no prompt yet, so a new one"
        )
    if added:
        new, why = add_phrase(prompt, added[1])
        if len(new) > MAX_PROMPT_CHARS:
            new, why = prompt, f"the prompt would pass {MAX_PROMPT_CHARS} characters: unchanged"
        return TurnDecision(action="refine", prompt=new, reasoning=f"rule: {why}")
    removed = _REMOVE.match(body)
    if removed and prompt:
        new, why = remove_phrases(prompt, removed[1])
        return TurnDecision(action="refine", prompt=new, reasoning=f"rule: {why}")
    return TurnDecision(action="new_prompt", prompt=text.strip(), reasoning="rule: a new prompt")


def phrases(prompt: str) -> list[str]:
    """The prompt's comma-separated phrases."""
    return [p.strip() for p in prompt.split(",") if p.strip()]


def _weighted(phrase: str) -> tuple[str, float]:
    """A phrase's text and A1111 weight: ``(x:1.2)`` → (x, 1.2); ``(x)`` → (x, 1.1)."""
    match = _WEIGHTED.fullmatch(phrase)
    if match is None:
        return phrase, 1.0
    return match[1], float(match[2]) if match[2] else 1.1


def add_phrase(prompt: str, text: str) -> tuple[str, str]:
    """``prompt`` with ``text`` appended, or with more emphasis if it is already a phrase."""
    parts = phrases(prompt)
    for i, phrase in enumerate(parts):
        inner, weight = _weighted(phrase)
        if inner.lower() == text.lower():
            weight = round(weight + EMPHASIS_STEP, 2)
            parts[i] = f"({inner}:{weight:g})"
            return ", ".join(parts), f"more emphasis on {inner!r} (weight {weight:g})"
    return ", ".join([*parts, text]), f"added {text!r}"


def remove_phrases(prompt: str, text: str) -> tuple[str, str]:
    """``prompt`` without its phrases that mention ``text`` (as whole words).

    Leading determiners are ignored ("the anime style" looks for "anime style"), and when
    no phrase mentions it, a trailing "style" / "look" / "effect" is dropped too ("anime").
    The prompt is returned unchanged, with the reason, when nothing or everything matches.
    """
    target = _DETERMINER.sub("", text.strip())
    parts = phrases(prompt)
    hits: list[str] = []
    for wanted in dict.fromkeys([target, _GENERIC.sub("", target)]):
        pattern = re.compile(rf"(?<!\w){re.escape(wanted)}(?!\w)", re.I)
        hits = [p for p in parts if pattern.search(_weighted(p)[0])]
        if hits:
            break
    if not hits:
        return prompt, f"nothing in the prompt mentions {target!r}, so it is unchanged"
    if len(hits) == len(parts):
        return prompt, (
            f"every phrase mentions {target!r}: removing them would leave no prompt, so it "
            "is unchanged (write a new prompt instead)"
        )
    kept = [p for p in parts if p not in hits]
    return ", ".join(kept), "removed " + ", ".join(repr(h) for h in hits)
