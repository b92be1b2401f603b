"""Draw the FUNGI pipeline figure of docs/how_fungi_works.md.

The documentation build calls ``fungi_diagram_svg()`` (see ``docs/hooks.py``);
``python docs/figures/fungi_diagram.py out.svg`` writes the figure to a file.
"""

from __future__ import annotations

import io
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

FROZEN = "#d9e7f5"  # the pretrained backbone: never updated
RANDOM = "#fde3c8"  # random, seeded, never trained
RESULT = "#d7efd9"  # what comes out
PLAIN = "#f2f2f2"


def _box(ax, x, y, width, height, text, colour, size=9.0):
    ax.add_patch(
        FancyBboxPatch(
            (x - width / 2, y - height / 2),
            width,
            height,
            boxstyle="round,pad=0.02,rounding_size=0.08",
            facecolor=colour,
            edgecolor="#444444",
            linewidth=1.0,
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=size, linespacing=1.3)


def _arrow(ax, start, end, text=None, dashed=False, text_offset=(0.0, 0.16)):
    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            arrowstyle="-|>",
            mutation_scale=12,
            linewidth=1.1,
            color="#b03a2e" if dashed else "#333333",
            linestyle=(0, (4, 3)) if dashed else "-",
        )
    )
    if text:
        ax.text(
            (start[0] + end[0]) / 2 + text_offset[0],
            (start[1] + end[1]) / 2 + text_offset[1],
            text,
            ha="center",
            va="bottom",
            fontsize=7.5,
            color="#b03a2e" if dashed else "#333333",
        )


def draw_fungi_diagram() -> plt.Figure:
    """The pipeline: forward left to right on top, gradients right to left below."""
    fig, ax = plt.subplots(figsize=(11.5, 5.2))
    ax.set_xlim(0, 11.5)
    ax.set_ylim(0, 5.2)
    ax.axis("off")

    top, bottom = 3.85, 1.35
    _box(ax, 0.85, top, 1.3, 1.0, "input x\n(image, text,\naudio, row)", PLAIN)
    _box(
        ax,
        2.85,
        top,
        1.95,
        1.5,
        "views per loss\nKL: the inference view\nDINO: 12 crops\nSimCLR: 49 patches",
        PLAIN,
        8.5,
    )
    _box(
        ax,
        5.2,
        top,
        1.95,
        1.5,
        "frozen backbone f\n(eval mode)\n\ntarget layer W\n(last attn.proj)",
        FROZEN,
    )
    _box(ax, 7.45, top, 1.6, 1.0, "embedding e\nof each view", PLAIN)
    _box(
        ax,
        9.85,
        top,
        2.2,
        1.5,
        "random loss heads\n(seeded, never trained)\nKL | DINO | SimCLR\n-> loss L(x)",
        RANDOM,
        8.5,
    )

    _arrow(ax, (1.5, top), (1.92, top))
    _arrow(ax, (3.78, top), (4.22, top))
    _arrow(ax, (6.18, top), (6.65, top))
    _arrow(ax, (8.25, top), (8.75, top))

    _box(
        ax,
        9.85,
        bottom,
        2.2,
        1.2,
        "per-sample gradient\ndL/dW at the target layer\nd_out x (d_in + 1)",
        PLAIN,
        8.5,
    )
    _box(
        ax,
        7.2,
        bottom,
        2.0,
        1.2,
        "random projection P\n(seeded, one for all\nlosses) -> width E",
        RANDOM,
        8.5,
    )
    _box(ax, 5.05, bottom, 1.5, 1.0, "L2\nnormalise", PLAIN)
    _box(
        ax,
        2.55,
        bottom,
        2.6,
        1.3,
        "concatenate\n[ e | g_KL | g_DINO | g_SimCLR ]\nwidth E x (1 + losses)",
        RESULT,
        8.5,
    )

    _arrow(
        ax,
        (9.85, top - 0.76),
        (9.85, bottom + 0.61),
        "backward to W only,\nsummed over the views",
        dashed=True,
        text_offset=(0.9, -0.2),
    )
    _arrow(ax, (8.75, bottom), (8.21, bottom))
    _arrow(ax, (6.2, bottom), (5.81, bottom))
    _arrow(ax, (4.3, bottom), (3.86, bottom))
    # the embedding block: the inference view's embedding, L2-normalised on its own
    _arrow(
        ax,
        (7.45, top - 0.51),
        (5.6, bottom + 0.52),
        "embedding block\n(inference view)",
        text_offset=(-0.85, -0.3),
    )

    ax.text(
        0.1,
        0.15,
        "blue: pretrained, frozen    orange: random from random_state, fixed    "
        "green: the features "
        "(then PCA, kNN, a linear probe, k-means, ...)",
        fontsize=7.5,
        color="#555555",
    )
    return fig


def fungi_diagram_svg() -> str:
    """The figure as SVG text, the same bytes for the same matplotlib version."""
    fig = draw_fungi_diagram()
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "skfungi", "svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


if __name__ == "__main__":
    with open(
        sys.argv[1] if len(sys.argv) > 1 else "fungi_diagram.svg", "w", encoding="utf-8"
    ) as out:
        out.write(fungi_diagram_svg())
