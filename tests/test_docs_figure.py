"""The pipeline figure shown by README.md and the site is the one its script draws."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"


@pytest.mark.parametrize("name, labels", [("fungi_diagram.svg", "MATHS"), ("fungi_overview.svg", "WORDS")])
def test_committed_pipeline_figures_are_what_their_script_draws(name, labels):
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("fungi_diagram", FIGURES / "fungi_diagram.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (FIGURES / name).read_text(encoding="utf-8")
    assert module.fungi_diagram_svg(getattr(module, labels)) == committed, (
        f"docs/figures/{name} is stale: python docs/figures/fungi_diagram.py docs/figures"
    )


def test_the_readme_and_home_page_show_the_figure_in_plain_words():
    """The maths (dL/dW, d_out x (d_in + 1)) is for "How FUNGI works"; a newcomer's first picture says
    each step in words."""
    root = FIGURES.parents[1]
    for page, figure in [
        ("README.md", "docs/figures/fungi_overview.svg"),
        ("docs/index.md", "figures/fungi_overview.svg"),
    ]:
        assert f"]({figure})" in (root / page).read_text(encoding="utf-8"), page
    assert "](figures/fungi_diagram.svg)" in (root / "docs" / "how_fungi_works.md").read_text(encoding="utf-8")
