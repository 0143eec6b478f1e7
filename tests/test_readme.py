"""Every `porejax ...` command the README shows exists with the flags it shows, and the README's flow
(synth -> train -> generate -> characterise -> compare -> info) runs with short settings."""

import json
import re
import shlex
from pathlib import Path

import pytest

from porejax.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# short versions of the README's sizes and steps (the flow's meaning is unchanged)
SHORTER = {"--size 128": "--size 40", "--size 512": "--size 32"}
EXTRA = {"train": ["--preset", "tiny", "--steps", "2"], "compare": ["--n", "3", "--size", "32"]}


def readme_commands() -> list[list[str]]:
    """The `porejax` commands in the README's code spans and code blocks, as argument lists (without
    "porejax"); optional parts in brackets ("[d.tif ...]") dropped."""
    text = README.read_text()
    blocks = [b.replace("\\\n", " ") for b in re.findall(r"```[a-z]*\n(.*?)```", text, re.S)]
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    lines = [line.split("#")[0] for block in blocks for line in block.splitlines()] + spans
    commands = []
    for line in lines:
        for part in re.split(r"&&|;", line):
            if not part.strip().startswith("porejax "):
                continue
            words = shlex.split(re.sub(r"\[[^\]]*\]", "", part))
            if len(words) >= 2 and words[0] == "porejax":
                commands.append(words[1:])
    return commands


def _subparsers() -> dict:
    action = next(a for a in build_parser()._actions if a.dest == "command")
    return action.choices


def test_the_readme_shows_commands_of_every_kind():
    shown = {command[0] for command in readme_commands()}
    assert {"demo", "synth", "train", "generate", "characterise", "compare", "import-torch", "info"} <= shown


@pytest.mark.parametrize("command", readme_commands(), ids=" ".join)
def test_every_readme_command_and_flag_exists(command):
    parsers = _subparsers()
    assert command[0] in parsers, f"`porejax {command[0]}` is in the README but not a sub-command"
    options = {s for action in parsers[command[0]]._actions for s in action.option_strings}
    unknown = [w for w in command[1:] if w.startswith("--") and w not in options]
    assert unknown == [], f"`porejax {' '.join(command)}`: no such option {unknown}"


@pytest.mark.parametrize("name", sorted(_subparsers()))
def test_every_sub_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0 and f"usage: porejax {name}" in capsys.readouterr().out


def _short(command: list[str]) -> list[str]:
    text = " ".join(command)
    for long, short in SHORTER.items():
        text = text.replace(long, short)
    words = text.split()
    return words + EXTRA.get(words[0], [])


@pytest.mark.slow  # about 2 CPU minutes: a short training run and a whole compare report
def test_the_readme_flow_runs_with_short_settings(tmp_path, monkeypatch, capsys):
    """The table's steps in order, in a fresh folder; `compare` without a voxel size reports per voxel."""
    steps = ("synth", "train", "generate", "characterise", "compare", "info")
    with_arguments = [  # the 3D flow of the table (the 2D-image section's inputs come from a python one-liner)
        c
        for c in readme_commands()
        if len(c) > 1 and "experiments/" not in " ".join(c) and not any("slices" in w or "2d" in w for w in c)
    ]
    flow = [next(c for c in with_arguments if c[0] == step) for step in steps]
    monkeypatch.chdir(tmp_path)
    for command in flow:
        assert main(_short(command)) == 0, " ".join(command)
    assert (tmp_path / "g.tif").is_file() and (tmp_path / "report" / "report.md").is_file()
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["settings"]["length_unit"] == "voxel"
    assert '"step": 2' in capsys.readouterr().out  # info of the trained run


def test_the_shipped_generator_generates_as_the_readme_shows(tmp_path, monkeypatch):
    (command,) = [c for c in readme_commands() if c[0] == "generate" and "experiments/" in " ".join(c)]
    if not (ROOT / "experiments" / "results" / "cathode" / "checkpoint").is_dir():
        pytest.skip("the shipped checkpoint is not in this checkout")
    monkeypatch.chdir(ROOT)
    short = _short(command)
    short[short.index("--out") + 1] = str(tmp_path / "g.tif")
    assert main(short) == 0 and (tmp_path / "g.tif").is_file()
