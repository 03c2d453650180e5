"""The CLI's whole command tree, for tests that walk it (``--help`` loads no command)."""

from __future__ import annotations

import typer

from tools.cli import build_app
from tools.commands import COMMANDS, LazyGroup, load_commands


def full_command_tree() -> LazyGroup:
    """The root group with every command module imported and its commands built."""
    group = typer.main.get_command(build_app())
    assert isinstance(group, LazyGroup)
    for module in dict.fromkeys(module for module, _ in COMMANDS.values()):
        group.commands.update(load_commands(module, group))
    return group
