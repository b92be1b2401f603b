"""Every gallery example in examples/ runs to completion (the docs build runs them too, for their output)."""

from __future__ import annotations

import runpy
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")  # examples call plt.show(): no window here
import matplotlib.pyplot as plt

pytestmark = pytest.mark.usefixtures("one_torch_thread")


EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


def test_examples_are_found():
    assert len(EXAMPLES) >= 9, [path.name for path in EXAMPLES]


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_example_runs(path, capsys):
    try:
        runpy.run_path(str(path), run_name="__main__")
    finally:
        plt.close("all")
    assert capsys.readouterr().out.strip(), f"{path.name} printed nothing"
