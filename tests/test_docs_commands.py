"""Every ``skfungi`` command shown in docs/getting_started.md, docs/cli.md and README.md runs as shown.

The commands are read from the pages: the lines of ```bash blocks that start with ``skfungi``
and the ``$ skfungi`` lines of ```text transcripts, with their ``\\`` continuation lines. Each page's
commands run in order in one folder (a later command may use a file an earlier one saved), on tiny
inputs made for the names they give (a folder of images in class sub-folders, a table with the
columns they name, a .npy array), each distinct command once. Only the backbone is substituted: a
pretrained model that cannot exist offline becomes a tiny local model of the same modality.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_support import BACKBONE, write_images

from skfungi import cli
from skfungi.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
FENCED_BLOCK = re.compile(r"^```(bash|text)\n(.*?)^```", re.DOTALL | re.MULTILINE)
TABLE_SUFFIXES = (".csv", ".parquet")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def shown_commands(page: Path) -> list[list[str]]:
    """The arguments (after ``skfungi``) of every command the page shows, in order, each distinct one once."""
    commands = []
    for language, block in FENCED_BLOCK.findall(page.read_text(encoding="utf-8")):
        prompt = "skfungi " if language == "bash" else "$ skfungi "
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith(prompt):
                words = shlex.split(line, comments=True)
                arguments = words[words.index("skfungi") + 1 :]
                if arguments not in commands:
                    commands.append(arguments)
    return commands


def make_input(path: Path, args: argparse.Namespace) -> None:
    """A tiny input at ``path`` of the kind its name says, unless an earlier command made it."""
    if path.exists():
        return
    if path.suffix in TABLE_SUFFIXES:
        columns = {args.text_column: ["the cat sat", "a big dog ran", "the bird sings", "a red tree"]}
        if args.label_column is not None:
            columns[args.label_column] = ["good", "bad", "good", "bad"]
        table = pd.DataFrame(columns)
        table.to_csv(path, index=False) if path.suffix == ".csv" else table.to_parquet(path)
    elif path.suffix == ".npy":
        np.save(path, np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8))
    else:
        write_images(path, {"cat": 2, "dog": 2})


def with_tiny_backbone(arguments: list[str], args: argparse.Namespace, text_backbone: str) -> list[str]:
    """``arguments`` with the value of ``--backbone`` replaced by a tiny model of the input's modality."""
    if args.backbone is None:
        return arguments
    tiny = text_backbone if Path(args.input).suffix in TABLE_SUFFIXES else BACKBONE
    position = arguments.index("--backbone") + 1
    return [*arguments[:position], tiny, *arguments[position + 1 :]]


@pytest.mark.parametrize(("page", "at_least"), [("docs/getting_started.md", 1), ("docs/cli.md", 5), ("README.md", 1)])
def test_every_command_of_the_page_runs_as_shown(tmp_path, monkeypatch, bert_dir, capsys, page, at_least):
    commands = shown_commands(ROOT / page)
    assert len(commands) >= at_least, f"{page} lost its commands: {commands}"
    monkeypatch.chdir(tmp_path)
    parser = build_parser()
    for arguments in commands:
        args = parser.parse_args(arguments)
        if args.command == "extract":
            for path in filter(None, (args.input, args.fit_input)):
                make_input(Path(path), args)
            arguments = with_tiny_backbone(arguments, args, f"hf:{bert_dir}")
        status = cli.main(arguments)
        assert status == 0, (f"skfungi {shlex.join(arguments)}", capsys.readouterr().err)
