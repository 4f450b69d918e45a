"""The README is the user manual: what it states about the CLI and the result format holds.

Every ``--flag`` the README names is checked against the `--help` of the command it is written
for — the command of the section it stands in (``### `bench run```), or the commands named on
the same line — so a renamed or removed option, or a typo, fails here. Every command has a
section; the quick start is the two command blocks CI relies on; the result schema version
the README states is the code's.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from bench.cli import app
from reports.results import SCHEMA_VERSION

README = Path(__file__).resolve().parents[1] / "README.md"
runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1"})

FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
SECTION = re.compile(r"^### `bench ([a-z ]+)`\s*$")
ROOT_FLAGS = {"--debug", "--help"}
# Lines about other programs (the benchmarks, pip, pyperf) name their own flags.
FOREIGN = re.compile(r"benchmarks/|python -m pyperf|pip install")


def leaf_commands() -> dict[str, Any]:
    """Every runnable command by its name as typed (`diagnose pooling`, `mapping check`).

    (Typer builds its commands on its own copy of click, so they are told apart by shape.)
    """
    found: dict[str, Any] = {}

    def walk(command: Any, path: tuple[str, ...]) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, (*path, name))
        else:
            found[" ".join(path)] = command

    walk(typer.main.get_command(app), ())
    return found


COMMANDS = leaf_commands()
MENTION = re.compile(r"\bbench (" + "|".join(
    sorted({*COMMANDS, *(name.split()[0] for name in COMMANDS)}, key=len, reverse=True))
    + r")\b")


def flags_of(command: Any) -> set[str]:
    return {opt for p in command.params if p.param_type_name == "option"
            for opt in (*p.opts, *p.secondary_opts) if opt.startswith("--")}


def flags_of_mention(name: str) -> set[str]:
    """`bench mapping` (without a subcommand) stands for all of its subcommands."""
    return set().union(*(flags_of(c) for n, c in COMMANDS.items()
                         if n == name or n.startswith(name + " ")))


ALL_FLAGS = set().union(*(flags_of(c) for c in COMMANDS.values())) | ROOT_FLAGS


BLOCK_START = re.compile(r"^(\s*$|#|```|\||- |\* |\d+\. )")


def readme_lines() -> Iterator[tuple[int, str | None, str, str]]:
    """(line number, the command whose section it is in or None, line, its block).

    A block is a paragraph, a list item, a table row or a line of a code block: a flag may be
    written for a command named anywhere in its block (`... a sweep on the same host says:
    raise --budget ...`).
    """
    section: str | None = None
    lines = README.read_text(encoding="utf-8").splitlines()
    in_code = False
    starts = []
    for i, line in enumerate(lines):
        if in_code or BLOCK_START.match(line):
            starts.append(i)
        if line.startswith("```"):
            in_code = not in_code
    bounds = [*starts, len(lines)]
    block_of = {}
    for start, end in itertools.pairwise(bounds):
        block = "\n".join(lines[start:end])
        for i in range(start, end):
            block_of[i] = block
    for i, line in enumerate(lines):
        heading = SECTION.match(line)
        if heading:
            section = heading.group(1)
        elif line.startswith(("## ", "### ")):
            section = None
        yield i + 1, section, line, block_of.get(i, line)


def test_every_command_has_a_section() -> None:
    sections = {section for _, section, _, _ in readme_lines() if section}
    assert sorted(set(COMMANDS) - sections) == []
    assert sorted(sections - set(COMMANDS)) == []


def test_every_flag_named_exists_where_it_is_named() -> None:
    wrong = []
    checked = 0
    for number, section, line, block in readme_lines():
        flags = set(FLAG.findall(line))
        if not flags or FOREIGN.search(line):
            continue
        named = MENTION.findall(block)
        if section is None and not named:
            allowed = ALL_FLAGS  # reference text: the flag must exist somewhere
        else:
            allowed = ROOT_FLAGS.union(*(flags_of_mention(n) for n in named))
            if section is not None:
                allowed |= flags_of(COMMANDS[section])
        checked += len(flags)
        wrong += [f"README.md:{number}: {flag} ({section or ', '.join(named) or 'any'})"
                  for flag in sorted(flags - allowed)]
    assert wrong == []
    assert checked > 100  # the parse found the README's flags at all


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_section_flag_is_in_the_commands_help(name: str) -> None:
    """The help a user reads lists every flag the command's section names."""
    named = {flag for _, section, line, block in readme_lines() if section == name
             and not MENTION.search(block) and not FOREIGN.search(line)
             for flag in FLAG.findall(line)} - ROOT_FLAGS
    result = runner.invoke(app, [*name.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert sorted(f for f in named if f not in result.output) == []


def test_help_texts_keep_their_brackets() -> None:
    """Rich markup swallows an unescaped ``[default: …]`` from a help text."""
    swallowed = [f"bench {name} {p.opts[0]}" for name, command in COMMANDS.items()
                 for p in command.params
                 if re.search(r"(?<!\\)\[", getattr(p, "help", None) or "")]
    assert swallowed == []


def test_quick_start_is_two_command_blocks() -> None:
    text = README.read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", quick, flags=re.S)
    assert len(blocks) == 2
    assert "bench generate" in blocks[0] and "bench run" in blocks[0]
    assert blocks[1].strip() == "scripts/test"
    assert "scripts/test" in (README.parent / ".ci" / "run").read_text(encoding="utf-8")


def test_schema_version_is_the_codes() -> None:
    stated = set(re.findall(r'"schema_version": (\d+)', README.read_text(encoding="utf-8")))
    assert stated == {str(SCHEMA_VERSION)}
