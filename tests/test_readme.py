"""Every Python code block of README.md runs (the quickstart on a tiny random ViT and random images)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def readme_blocks() -> list[tuple[int, str]]:
    """(line number of the first code line, code) of each ```python block of the README, in order."""
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, match.start(1)) + 1, match.group(1)) for match in BLOCK.finditer(text)]


def test_every_python_block_is_found():
    blocks = readme_blocks()
    assert blocks, "README.md has no ```python block"
    assert len(blocks) == README.read_text(encoding="utf-8").count("```python")


@pytest.mark.parametrize(("line", "code"), readme_blocks(), ids=[f"README.md:{line}" for line, _ in readme_blocks()])
def test_readme_block_runs(line, code, one_torch_thread):
    # Padding with newlines makes tracebacks point at the README's own line numbers.
    exec(compile("\n" * (line - 1) + code, str(README), "exec"), {"__name__": "__readme__"})
