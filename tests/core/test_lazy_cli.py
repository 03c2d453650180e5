"""Lazy command loading (issue 15): ``diffgraph --help`` lists every command from the
static table in tools/commands.py without importing the modules that define them, and
the table cannot drift from what those modules register."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tests.support.cli import full_command_tree
from tools.cli import build_app
from tools.commands import COMMANDS, LazyGroup, Pending, load_commands

ROOT = Path(__file__).resolve().parents[2]
MODULES = tuple(dict.fromkeys(module for module, _ in COMMANDS.values()))
HEAVY = (
    "pydantic",
    "numpy",
    "torch",
    "langgraph",
    "langchain_core",
    "onnxruntime",
    "chromadb",
    "transformers",
    "diffusers",
)


def _root() -> LazyGroup:
    group = typer.main.get_command(build_app())
    assert isinstance(group, LazyGroup)
    return group


def _listed_help(command) -> str:
    """The text a group's help lists for a command: its help's first paragraph."""
    return inspect.cleandoc(command.short_help or command.help or "").split("\n\n")[0].strip()


def _modules_after(args: list[str], tmp_path: Path) -> tuple[str, set[str]]:
    """stdout of a fresh ``diffgraph ARGS`` process and the modules it imported."""
    code = (
        "import json, sys\n"
        f"sys.argv = ['diffgraph', *{args!r}]\n"
        "from main import app\n"
        "try:\n"
        "    app()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('MODULES ' + json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    line = next(x for x in out.stderr.splitlines() if x.startswith("MODULES "))
    return out.stdout, set(json.loads(line.removeprefix("MODULES ")))


def test_table_names_exactly_what_the_modules_register():
    group = _root()
    registered: dict[str, tuple[str, str]] = {}
    for module in MODULES:
        for name, command in load_commands(module, group).items():
            assert name not in registered, f"{name} is registered by two modules"
            assert not command.hidden and not command.deprecated
            assert not getattr(command, "rich_help_panel", None)  # the default panel
            registered[name] = (module, _listed_help(command))
    assert registered == COMMANDS


def test_root_help_is_the_same_before_and_after_the_commands_load(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    group = _root()

    def render(group: LazyGroup) -> str:
        with pytest.raises(SystemExit):
            group.main(["--help"], prog_name="diffgraph")
        return capsys.readouterr().out

    lazy = render(group)
    assert "train-autolora" in lazy and "Image-quality scorers." in lazy
    assert all(isinstance(group.commands[name], Pending) for name in COMMANDS)
    group = full_command_tree()
    assert not any(isinstance(command, Pending) for command in group.commands.values())
    assert render(group) == lazy
    assert list(group.commands) == list(COMMANDS)


def test_help_lists_every_command_without_importing_any(tmp_path):
    stdout, modules = _modules_after(["--help"], tmp_path)
    for name, (_, help_text) in COMMANDS.items():
        assert name in stdout and help_text.split(";")[0] in stdout
    assert not modules & set(MODULES)
    assert not {m.split(".")[0] for m in modules} & set(HEAVY)


def test_a_command_imports_only_its_own_module(tmp_path):
    stdout, modules = _modules_after(["select", "--help"], tmp_path)
    assert "--no-llm" in stdout
    assert modules & set(MODULES) == {"agents.selection.cli"}
    assert not {m.split(".")[0] for m in modules} & {"torch", "langgraph", "chromadb"}


def test_unknown_command_suggests_and_exits_2():
    result = CliRunner().invoke(build_app(), ["selct", "a cat"])
    assert result.exit_code == 2
    assert "No such command 'selct'. Did you mean 'select'?" in result.output


def test_subcommand_of_a_lazy_group_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIFFGRAPH_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(build_app(), ["graph", "stats", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["experts"] == 0
