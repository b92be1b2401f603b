"""The evidence as Markdown tables and a few-shot plot, from a run or from the JSON of earlier runs."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .harness import HEADLINE_SHOTS, SHOTS, label


def _pm(value: tuple[float, float], scale=100.0, digits=1) -> str:
    return f"{scale * value[0]:.{digits}f} ± {scale * value[1]:.{digits}f}"


def format_result(result: dict) -> str:
    """Markdown tables of one pair: accuracies, deltas and verdicts, headline protocols, costs."""
    lines = [
        f"### {result['pair']}: {result['title']}",
        "",
        f"Pool {result['n_pool']} samples, {result['n_classes']} classes; {result['n_splits']} random stratified "
        f"splits of {result['n_train']} train / {result['n_test']} test; accuracy in %, mean ± std over splits.",
        "",
        "| features | kNN top-1 (PCA) | mean/class (PCA) | top-1 (no PCA) | mean/class (no PCA) | "
        f"{HEADLINE_SHOTS}-shot top-1 | {HEADLINE_SHOTS}-shot mean/class | Δ vs embedding | "
        "Δ vs control (control) | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    shot = f"shot{HEADLINE_SHOTS}"
    for row in result["rows"]:
        name = f"*control: {row['label']}*" if row["is_control"] else row["label"]
        cells = [
            _pm(row["full_pca.top1"]),
            _pm(row["full_pca.mean_per_class"]),
            _pm(row["full_raw.top1"]),
            _pm(row["full_raw.mean_per_class"]),
            _pm(row[f"{shot}.top1"]),
            _pm(row[f"{shot}.mean_per_class"]),
        ]
        if row["is_control"]:
            cells += ["", "", ""]
        else:
            versus_embedding, versus_control = row["vs_embedding"], row["vs_control"]
            cells.append("-" if versus_embedding["verdict"] == "-" else f"{100 * versus_embedding['delta'][0]:+.1f}")
            delta, spread = 100 * versus_control["delta"][0], 100 * versus_control["spread"]
            unchanged = versus_control["verdict"] == "-"
            cells.append("-" if unchanged else f"{delta:+.1f} (spread {spread:.1f}; {row['control']})")
            cells.append(versus_control["verdict"])
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Few-shot kNN top-1 (first n per class of each split; k = min(20, n)):", ""]
    lines.append("| features | " + " | ".join(f"{shots} shot" for shots in SHOTS) + " |")
    lines.append("|---|" + "---|" * len(SHOTS))
    for entry in result["headline"].values():
        lines.append(f"| {entry['label']} | " + " | ".join(_pm(entry["curve"][f"{s}.top1"]) for s in SHOTS) + " |")
    probed = [entry for entry in result["headline"].values() if "probe.top1" in entry]
    if probed:
        lines += [
            "",
            f"Linear probe (PCA 512, L2 swept on a 20% validation split) and k-means AMI on the test set, "
            f"{probed[0]['n_probe_splits']} splits:",
            "",
            "| features | probe top-1 | probe mean/class | k-means AMI (x100) |",
            "|---|---|---|---|",
        ]
        for entry in probed:
            lines.append(
                f"| {entry['label']} | {_pm(entry['probe.top1'])} | {_pm(entry['probe.mean_per_class'])} | "
                f"{_pm(entry['kmeans.ami'])} |"
            )
    lines += ["", "| block | ms / sample | × embedding | fit s |", "|---|---|---|---|"]
    for cost in result["costs"]:
        cached = " (cached)" if cost["from_cache"] else ""
        lines.append(
            f"| {label([cost['block']])} | {1000 * cost['seconds_per_sample']:.2f}{cached} | "
            f"{cost['ratio_to_embedding']:.1f} | {cost['fit_seconds']:.1f} |"
        )
    lines += [
        "",
        f"Extraction {result['extract_seconds']:.0f} s, scoring {result['score_seconds']:.0f} s.",
    ]
    if result["pca_check"]:
        check = result["pca_check"]
        lines.append(
            f"PCA check (emb + KL, split 1): randomised SVD {100 * check['randomized']:.2f}% vs exact "
            f"{100 * check['covariance_eigh']:.2f}% top-1."
        )
    return "\n".join(lines)


def plot_few_shot(results: Sequence[dict], path: Path) -> None:
    """Accuracy vs shots per pair: embedding, embedding + all gradients, and its control."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.4), squeeze=False)
    for axis, result in zip(axes[0], results, strict=True):
        for name, style in (("embedding", "o-"), ("fungi", "s-"), ("control", "^--")):
            entry = result["headline"][name]
            means = np.array([entry["curve"][f"{s}.top1"][0] for s in SHOTS]) * 100
            stds = np.array([entry["curve"][f"{s}.top1"][1] for s in SHOTS]) * 100
            axis.errorbar(SHOTS, means, yerr=stds, fmt=style, capsize=3, label=entry["label"])
        axis.set_xscale("log")
        axis.set_xticks(SHOTS, [str(s) for s in SHOTS])
        axis.set_xlabel("training samples per class")
        axis.set_ylabel("kNN top-1 accuracy (%)")
        axis.set_title(result["pair"])
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


# -- command line -----------------------------------------------------------------------------


def report_from(paths: Sequence[Path], markdown: Path | None, plot: Path | None) -> int:
    """Tables and plot from the JSON of earlier runs; refuses incomplete runs."""
    results, walls = [], []
    for path in paths:
        stored = json.loads(Path(path).read_text())
        if not stored.get("complete"):
            print(f"ERROR: {path} is from a run that did not finish; rerun it.", file=sys.stderr)
            return 2
        results.extend(stored["results"])
        walls.append(stored["wall_seconds"])
    report = "\n\n".join(format_result(result) for result in results)
    report += "\n\nWall time of the runs: " + ", ".join(f"{wall / 60:.1f} min" for wall in walls) + "."
    print(report)
    if markdown:
        markdown.write_text(report + "\n")
    if plot:
        plot_few_shot(results, plot)
    return 0
