"""A seed out of range stops every command that takes ``--seed`` with one clear line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.support.cli import full_command_tree
from tools.cli import build_app


@pytest.fixture(autouse=True)
def private_dirs(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIFFGRAPH_DATA_DIR", str(tmp_path / "data"))


def seed_commands(group, path=()) -> list[tuple[str, ...]]:
    """The command paths (e.g. ``("ref-prompts", "pick")``) that take ``--seed``."""
    found = []
    for name, command in getattr(group, "commands", {}).items():
        if any("--seed" in getattr(p, "opts", ()) for p in command.params):
            found.append((*path, name))
        found += seed_commands(command, (*path, name))
    return found


def one_error_line(args: list[str]) -> str:
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""
    return result.stderr


def test_generate_refuses_a_seed_beyond_the_maximum():
    from tools.generation.request import MAX_SEED

    message = one_error_line(["generate", "x", "--seed", str(2**63)])
    assert f"--seed {2**63} is out of range: give a seed from 0 to {MAX_SEED}" in message


def test_the_k_means_seed_has_its_own_maximum():
    message = one_error_line(["ref-prompts", "pick", "--seed", str(2**32)])
    assert "from 0 to 4294967295" in message


def test_every_seed_option_gives_one_line():
    commands = seed_commands(full_command_tree())
    assert {("generate",), ("chat",), ("calibrate",), ("eval", "benchmark")} <= set(commands)
    for command in commands:  # required arguments are checked after the seed given first
        assert "--seed -1 is out of range" in one_error_line([*command, "--seed", "-1"])
        assert f"--seed {2**63}" in one_error_line([*command, "--seed", str(2**63)])
