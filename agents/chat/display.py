"""Terminal rendering of the chat (rich), or one JSON object per turn with ``--json``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape

from agents.chat.policy import COMMANDS, REFINEMENTS
from agents.chat.result import TurnReport
from agents.chat.state import Conversation, Generation
from graph.console import console, err_console, print_table

if TYPE_CHECKING:
    from agents.chat.graph import ChatSession

PROMPT = "[bold cyan]you>[/] "


class ChatView:
    """Prints what a session does; with ``as_json`` stdout gets only one JSON line per turn."""

    def __init__(self, as_json: bool = False, echo: bool = False) -> None:
        self.as_json = as_json
        self.echo_messages = echo
        self.out = err_console if as_json else console
        self.shown_notes: set[str] = set()  # the pipeline's notes, said once at the start

    def _say(self, text: str) -> None:
        self.out.print(text, highlight=False, soft_wrap=True)

    def opened(self, session: ChatSession) -> None:
        ctx = session.ctx
        pipeline = ctx.pipeline
        mode = (
            f"LLM ({escape(ctx.llm.model or '')})"
            if ctx.chat_mode == "llm"
            else "no-LLM (rules edit the prompt text)"
        )
        state = f"resumed at turn {session.conversation().turn}" if session.resumed else "new"
        self._say(f"[bold]DiffGraph chat[/] · thread [bold]{session.thread}[/] ({state}) · {mode}")
        generator = pipeline.generator
        base = escape(str(pipeline.settings.base_model or ""))
        demo = " · [yellow]DEMO: tiny random weights[/]" if generator.demo else ""
        self._say(f"base model {base} ({generator.family.value}){demo}")
        for note in pipeline.notes:
            self._say(f"[yellow]note:[/] {escape(note)}")
        self.shown_notes = set(pipeline.notes)
        if session.resumed:
            self.conversation(session.conversation())
        self._say(
            'Write a prompt, refine it ("more cinematic lighting", "drop the anime style", '
            '"use fewer experts") or type /help.'
        )

    def ask(self) -> str | None:
        """The next message typed at the terminal; None at end of input or Ctrl-C."""
        try:
            return console.input(PROMPT)
        except (EOFError, KeyboardInterrupt):
            self._say("")
            return None

    def echo(self, message: str) -> None:
        """Show a message read from a script or a pipe, so the transcript reads as a chat."""
        if self.echo_messages:
            self._say(f"{PROMPT}{escape(message)}")

    def error(self, error: BaseException) -> None:
        err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)

    def interrupted(self) -> None:
        self._say("[yellow]interrupted:[/] the thread is as it was before this message")

    def closed(self, session: ChatSession) -> None:
        self._say(
            f"thread [bold]{session.thread}[/] is kept: resume it with "
            f"`diffgraph chat --thread {session.thread}`"
        )

    def turn(self, report: TurnReport) -> None:
        if self.as_json:
            print(report.model_dump_json(), flush=True)
            return
        decision = report.decision
        how = f"{decision.action} ({report.interpreter})"
        if report.interpreter != "command" and decision.reasoning:
            how += f": {decision.reasoning}"
        self._say(f"[dim]read as {escape(how)}[/]")
        for change in report.changes:
            self._say(f"[green]•[/] {escape(change)}")
        for note in report.notes:
            self._say(f"[yellow]note:[/] {escape(note)}")
        if report.error:
            self._say(f"[bold red]error:[/] {escape(report.error)}")
        conversation = report.conversation
        if report.generated and conversation.last is not None:
            self.generation(conversation.last, conversation)
        if decision.action == "show":
            self.conversation(conversation)
            if conversation.last is not None:
                self.experts(conversation.last, conversation)
        if decision.action == "help":
            self.help()
        if report.saved is not None:
            saved = report.saved
            self._say(f"saved {len(saved.files)} files to [bold]{escape(str(saved.folder))}[/]")
            if saved.merged_model:
                self._say(f"merged model: {escape(str(saved.merged_model))}")
        self._say(f"[dim]trace {escape(str(report.trace_path))}[/]")

    def conversation(self, conversation: Conversation) -> None:
        bound = "selection decides" if conversation.max_loras is None else conversation.max_loras
        self._say(f"[bold]prompt[/]: {escape(conversation.prompt or '-')}")
        self._say(
            f"seed {conversation.seed} · LoRA bound {bound} · pinned "
            f"{', '.join(conversation.pinned) or '-'} · banned "
            f"{', '.join(conversation.banned) or '-'}"
        )

    def generation(self, last: Generation, conversation: Conversation) -> None:
        self._say(f"[bold]{escape(last.recipe.final_prompt)}[/]")
        self.experts(last, conversation)
        for note in last.recipe.notes:
            if note not in self.shown_notes:
                self._say(f"[yellow]note:[/] {escape(note)}")
        self._say(f"images: {escape(', '.join(str(p) for p in last.images))}")
        self._say(f"recipe: {escape(str(last.recipe_path))} (+ .a1111.txt, .comfyui.json)")

    def experts(self, last: Generation, conversation: Conversation) -> None:
        recipe = last.recipe
        rows = [
            (
                e.kind,
                e.expert_id,
                e.name,
                f"{e.coefficient:.3f}",
                f"{e.merge_weight:.3f}",
                "pinned" if e.expert_id in conversation.pinned else "",
            )
            for e in recipe.checkpoints + recipe.loras
        ]
        if not recipe.checkpoints:
            rows.insert(0, ("ckpt", "(base model)", recipe.base_model or "", "", "", ""))
        title = f"experts of turn {last.turn} · planner {recipe.planner} · selection "
        title += recipe.selection_mode + (" · DEMO" if recipe.demo else "")
        print_table(title, ["kind", "id", "name", "coefficient", "merge weight", "note"], rows)

    def help(self) -> None:
        print_table("commands", ["command", "what it does"], COMMANDS)
        print_table(
            "refinements (no-LLM rules; the LLM reads free text)", ["say", "does"], REFINEMENTS
        )
