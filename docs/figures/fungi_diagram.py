"""Draw the FUNGI pipeline figures: in plain words (README, home page) and with the
maths (docs/how_fungi_works.md).

``python docs/figures/fungi_diagram.py docs/figures`` writes both SVG files; a test
keeps the committed files equal to what this script draws.
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


def _arrow(ax, start, end, text=None, dashed=False, text_offset=(0.0, 0.16), size=7.5):
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
            fontsize=size,
            color="#b03a2e" if dashed else "#333333",
        )


# What each box says: in plain words for the README and the home page, with the maths
# for "How FUNGI works". The layout is the same.
WORDS = {
    "input": "your input:\nan image,\na text, a clip\nor a table row",
    "views": "a few altered copies\n(crops, patches,\nnoisy copies)",
    "backbone": "your pretrained\nmodel, frozen:\nnever changed",
    "embedding": "its summary vector\n(the embedding)\nof each copy",
    "heads": "three small random\nscorers, never trained,\nscore the copies",
    "gradient": "how each score would\nchange one layer\nof the model",
    "projection": "shrunk to the\nembedding's size\nby a fixed random mix",
    "normalise": "each part\nscaled to\nlength 1",
    "features": "your features:\nthe embedding + one part\nper scorer, side by side",
    "backward": "one per scorer,\nadded over the copies",
    "embedding_arrow": "the embedding\nof the input itself",
    "legend": "blue: your model, unchanged    orange: random, fixed by random_state    "
    "green: what you get (for kNN, a linear model, k-means, ...)",
}
MATHS = {
    "input": "input x\n(image, text,\naudio, row)",
    "views": "views per loss\nKL: the inference view\nDINO: 12 crops\n"
    "SimCLR: 49 patches",
    "backbone": "frozen backbone f\n(eval mode)\n\ntarget layer W\n(last attn.proj)",
    "embedding": "embedding e\nof each view",
    "heads": "random loss heads\n(seeded, never trained)\nKL | DINO | SimCLR\n"
    "-> loss L(x)",
    "gradient": "per-sample gradient\ndL/dW at the target layer\nd_out x (d_in + 1)",
    "projection": "random projection P\n(seeded, one for all\nlosses) -> width E",
    "normalise": "L2\nnormalise",
    "features": "concatenate\n[ e | g_KL | g_DINO | g_SimCLR ]\nwidth E x (1 + losses)",
    "backward": "backward to W only,\nsummed over the views",
    "embedding_arrow": "embedding block\n(inference view)",
    "legend": "blue: pretrained, frozen    orange: random from random_state, fixed    "
    "green: the features (then PCA, kNN, a linear probe, k-means, ...)",
}


def draw_fungi_diagram(labels: dict[str, str] = MATHS) -> plt.Figure:
    """The pipeline: forward left to right on top, gradients right to left below."""
    size = 9.0 if labels is WORDS else 8.5
    fig, ax = plt.subplots(figsize=(11.5, 5.2))
    ax.set_xlim(0, 11.5)
    ax.set_ylim(0, 5.2)
    ax.axis("off")

    top, bottom = 3.85, 1.35
    _box(ax, 0.85, top, 1.3, 1.1, labels["input"], PLAIN, size)
    _box(ax, 2.85, top, 1.95, 1.5, labels["views"], PLAIN, size)
    _box(ax, 5.2, top, 1.95, 1.5, labels["backbone"], FROZEN, size)
    _box(ax, 7.45, top, 1.6, 1.0, labels["embedding"], PLAIN, size)
    _box(ax, 9.85, top, 2.2, 1.5, labels["heads"], RANDOM, size)

    _arrow(ax, (1.5, top), (1.92, top))
    _arrow(ax, (3.78, top), (4.22, top))
    _arrow(ax, (6.18, top), (6.65, top))
    _arrow(ax, (8.25, top), (8.75, top))

    _box(ax, 9.85, bottom, 2.2, 1.2, labels["gradient"], PLAIN, size)
    _box(ax, 7.2, bottom, 2.0, 1.2, labels["projection"], RANDOM, size)
    _box(ax, 5.05, bottom, 1.5, 1.0, labels["normalise"], PLAIN, size)
    _box(ax, 2.55, bottom, 2.6, 1.3, labels["features"], RESULT, size)

    note = 8.5 if labels is WORDS else 7.5
    _arrow(
        ax,
        (9.85, top - 0.76),
        (9.85, bottom + 0.61),
        labels["backward"],
        dashed=True,
        text_offset=(0.9, -0.2),
        size=note,
    )
    _arrow(ax, (8.75, bottom), (8.21, bottom))
    _arrow(ax, (6.2, bottom), (5.81, bottom))
    _arrow(ax, (4.3, bottom), (3.86, bottom))
    # the embedding block: the inference view's embedding, L2-normalised on its own
    _arrow(
        ax,
        (7.45, top - 0.51),
        (5.6, bottom + 0.52),
        labels["embedding_arrow"],
        text_offset=(-0.95, -0.3),
        size=note,
    )

    ax.text(
        0.1,
        0.15,
        labels["legend"],
        fontsize=9.0 if labels is WORDS else 7.5,
        color="#444444",
    )
    return fig


def fungi_diagram_svg(labels: dict[str, str] = MATHS) -> str:
    """The figure as SVG text, the same bytes for the same matplotlib version."""
    fig = draw_fungi_diagram(labels)
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "skfungi", "svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


if __name__ == "__main__":
    # python docs/figures/fungi_diagram.py [docs/figures]: both figures into that folder
    folder = sys.argv[1] if len(sys.argv) > 1 else "."
    for name, labels in (("fungi_diagram.svg", MATHS), ("fungi_overview.svg", WORDS)):
        with open(f"{folder}/{name}", "w", encoding="utf-8") as out:
            out.write(fungi_diagram_svg(labels))
