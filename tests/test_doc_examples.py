"""The shell examples in README.md and docs/*.md stay true.

Every ``colorization ...`` / ``colorize ...`` command in a fenced shell block is parsed by the real
CLI (options, choices and types; paths that do not exist here are accepted, since they stand for the
reader's files), and the README's first example is run as written.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer

from colorization.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)\s*$")
_SHELL = {"bash", "sh", "shell", "console", ""}


def shell_commands(path: Path) -> list[tuple[int, str]]:
    """``(line, command)`` for each colorization/colorize command in the file's shell blocks."""
    out: list[tuple[int, str]] = []
    lang: str | None = None
    pending, start = "", 0
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = _FENCE.match(line.strip())
        if m:
            lang = None if lang is not None else m.group(1)
            continue
        if lang is None or lang not in _SHELL:
            continue
        text = line.split(" #", 1)[0].rstrip() if not line.lstrip().startswith("#") else ""
        if not pending:
            start = no
        pending += text.lstrip("$ ").rstrip("\\") + " "
        if text.endswith("\\"):
            continue
        for part in re.split(r"&&|;|\|\||\|", pending):
            words = part.strip()
            if re.match(r"^(colorization|colorize)(\s|$)", words):
                out.append((start, words))
        pending = ""
    return out


EXAMPLES = [(p, no, cmd) for p in DOCS for no, cmd in shell_commands(p)]


def test_the_docs_have_examples():
    assert len(EXAMPLES) >= 20, [c for _, _, c in EXAMPLES]


def _parse(command: str) -> None:
    args = shlex.split(command)
    prog, rest = args[0], args[1:]
    if prog == "colorize":  # the console script is `colorization colorize`
        rest = ["colorize", *rest]
    group = typer.main.get_command(app)
    ctx = group.make_context("colorization", list(rest), resilient_parsing=False)
    if isinstance(group, click.Group) and ctx.protected_args:
        name, *sub_args = ctx.protected_args + ctx.args
        cmd = group.get_command(ctx, name)
        assert cmd is not None, f"no such subcommand {name!r}"
        cmd.make_context(name, sub_args, parent=ctx)


@pytest.mark.parametrize("path, line, command", EXAMPLES, ids=[f"{p.name}:{n}" for p, n, _ in EXAMPLES])
def test_doc_command_parses(path, line, command):
    if "--help" in command.split():
        return  # --help exits from the parser by design
    try:
        _parse(command)
    except click.exceptions.Exit:
        pass
    except click.BadParameter as exc:
        if "does not exist" not in str(exc):  # a reader's file, not a wrong option
            pytest.fail(f"{path.name}:{line}: {command}\n{exc.format_message()}")
    except click.UsageError as exc:
        pytest.fail(f"{path.name}:{line}: {command}\n{exc.format_message()}")


def test_readme_first_example_runs(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first = re.search(r"```bash\n(.*?)\n", readme).group(1)
    assert first.startswith("pip install torch==2.13.0 -e . && colorize "), first
    command = shlex.split(first.split("&&", 1)[1])
    exe = shutil.which("colorize")
    assert exe is not None, "the colorize console script is not installed"
    photo = ROOT / command[1]
    out = tmp_path / "colorized"
    subprocess.run([sys.executable, "-m", "colorization.cli", "colorize", str(photo), "-o", str(out)],
                   check=True, capture_output=True, timeout=300)
    assert (out / photo.name).is_file()
