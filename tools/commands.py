"""The top-level commands, known without importing the modules that define them.

``diffgraph --help`` lists every command from :data:`COMMANDS` alone; a command's module
is imported only when that command is resolved (to run it or show its own help). Each
module defines ``register(app: typer.Typer) -> None``; tests/core/test_lazy_cli.py checks
that this table names exactly what the modules register, with the same one-line help.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

# name -> (module that registers it, first paragraph of its help), in `--help` order
# (Typer lists single commands before groups).
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": (
        "agents.pipeline.cli",
        "Select experts, plan their coefficients, merge exactly and generate.",
    ),
    "demo": (
        "agents.demo.cli",
        "Run everything end to end on the small trained world: crawl, planner, chat, benchmark.",
    ),
    "chat": (
        "agents.chat.cli",
        "Write a prompt, then refine it turn by turn; /help lists the commands.",
    ),
    "serve": (
        "agents.webui.cli",
        "Serve the web UI: generate and chat, steer, export, browse the graph, crawl, traces.",
    ),
    "merge": (
        "tools.weights.cli",
        "Merge checkpoints and LoRAs into one single-file .safetensors (streamed).",
    ),
    "crawl": (
        "agents.construction.cli",
        "Crawl a platform: register, download and calibrate experts; resumable after a kill.",
    ),
    "select": (
        "agents.selection.cli",
        "Choose checkpoints and LoRAs for PROMPT; show the reasons and what was dropped.",
    ),
    "calibrate": (
        "tools.calibration.cli",
        "Generate and score images of each expert for every reference prompt (resumable).",
    ),
    "plan": (
        "planner.cli",
        "One coefficient per expert for PROMPT and the softmax merge weights they give.",
    ),
    "train-planner": (
        "planner.cli",
        "Train the planner with REINFORCE; writes the checkpoint, a reward CSV and a PNG plot.",
    ),
    "graph": ("graph.cli", "Inspect and edit the universal graph."),
    "eval": ("evals.cli", "Evaluate agent traces and run benchmarks."),
    "weights": ("tools.weights.cli", "Inspect and convert expert weight files."),
    "ref-prompts": ("tools.calibration.cli", "Reference prompts used to calibrate experts."),
    "scorers": ("tools.scorers.cli", "Image-quality scorers."),
    "train-autolora": (
        "tools.autolora.cli",
        "Train the AutoLoRA baseline: weight-encoder retriever and fusion gates.",
    ),
    "world": (
        "tools.world.cli",
        "The small trained world (64×64 shapes; not SD 1.5): build it, measure it.",
    ),
}


class Pending(TyperCommand):
    """A command whose module is not imported yet: its name and help, for listings."""

    def __init__(self, name: str, module: str, help_text: str) -> None:
        super().__init__(name, help=help_text)
        self.module = module


class LazyGroup(TyperGroup):
    """A Typer group whose commands from :data:`COMMANDS` load on first resolution."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for name, (module, help_text) in COMMANDS.items():
            self.commands.setdefault(name, Pending(name, module, help_text))

    def resolve_command(
        self, ctx: typer.Context, args: list[str]
    ) -> tuple[str | None, Any, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if isinstance(command, Pending):
            self.commands.update(load_commands(command.module, self))
            command = self.commands[name]
        return name, command, rest


def load_commands(module: str, parent: TyperGroup) -> dict[str, TyperCommand | TyperGroup]:
    """The click commands ``module`` registers, built as Typer would under ``parent``."""
    scratch = typer.Typer(
        rich_markup_mode=parent.rich_markup_mode, suggest_commands=parent.suggest_commands
    )
    importlib.import_module(module).register(scratch)
    return dict(typer.main.get_group(scratch).commands)
