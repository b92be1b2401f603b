"""The pipeline figure shown by README.md and the site is the one its script draws."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"


def test_committed_pipeline_figure_is_what_its_script_draws():
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("fungi_diagram", FIGURES / "fungi_diagram.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (FIGURES / "fungi_diagram.svg").read_text(encoding="utf-8")
    assert module.fungi_diagram_svg() == committed, (
        "docs/figures/fungi_diagram.svg is stale: python docs/figures/fungi_diagram.py docs/figures/fungi_diagram.svg"
    )
