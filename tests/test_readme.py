"""README.md's quickstart is docs/getting_started.md's first pipeline, with the same printed output.

tests/test_getting_started.py runs that pipeline and checks what it prints; here the README's copy is
checked against the page (same code up to formatting, same output), so both stay true without
running the minute-long pipeline twice. The README's other Python blocks need user files or a
network (downloaded weights): they are compiled, not run.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
PRINTED_BLOCK = re.compile(r"^It prints[^\n]*:\n\n```text\n(.*?)^```", re.DOTALL | re.MULTILINE)


def first_pipeline(path: Path) -> tuple[str, str]:
    """(code, printed output) of the first Python block of ``path`` and the "It prints" block after it."""
    text = path.read_text(encoding="utf-8")
    code, printed = PYTHON_BLOCK.search(text), PRINTED_BLOCK.search(text)
    assert code is not None and printed is not None, f"{path.name} lost its pipeline or its output"
    return code.group(1), printed.group(1)


def test_readme_quickstart_is_the_tested_getting_started_pipeline():
    readme_code, readme_output = first_pipeline(ROOT / "README.md")
    page_code, page_output = first_pipeline(ROOT / "docs" / "getting_started.md")
    assert ast.dump(ast.parse(readme_code)) == ast.dump(ast.parse(page_code))
    assert readme_output == page_output


def test_every_readme_python_block_compiles():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = PYTHON_BLOCK.findall(text)
    assert len(blocks) == text.count("```python") >= 2
    for block in blocks:
        compile(block, "README.md", "exec")
