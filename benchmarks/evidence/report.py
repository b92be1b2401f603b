"""The evidence as Markdown tables and a few-shot plot, from a run or from the JSON of earlier runs."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .harness import HEADLINE_SHOTS, SHOTS, label


def _pm(values, scale=100.0, digits=1) -> str:
    values = np.asarray(values, dtype=np.float64)
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{scale * values.mean():.{digits}f} ± {scale * std:.{digits}f}"


def _against(comparison: dict) -> str:
    gain, spread = 100 * comparison["gain"], 100 * comparison["spread"]
    return f"{gain:+.1f} (spread {spread:.1f}; {label(comparison['reference'])})"


def format_result(result: dict) -> str:
    """Markdown tables of one pair: accuracies, both comparisons and the verdict, headline protocols, costs."""
    document = result["evaluation"]
    lines = [
        f"### {result['pair']}: {result['title']}",
        "",
        f"Pool {result['n_pool']} samples, {result['n_classes']} classes; {result['n_splits']} random stratified "
        f"splits of {result['n_train']} train / {result['n_test']} test; accuracy in %, mean ± std over splits.",
        "",
        *_accuracy_table(document["rows"]),
        "",
        "The gradient feature sets against their matched control and the best no-gradient feature set of equal or "
        "lower cost (kNN top-1 with PCA, paired over the splits); the verdict is stated on the stronger comparison, "
        "whichever leaves the smaller gain:",
        "",
        *_comparison_table(document["rows"]),
    ]
    lines += ["", "Few-shot kNN top-1 (first n per class of each split; k = min(20, n)):", ""]
    lines.append("| features | " + " | ".join(f"{shots} shot" for shots in SHOTS) + " |")
    lines.append("|---|" + "---|" * len(SHOTS))
    for entry in result["headline"].values():
        curve = entry["curve"]
        cells = [_pm(curve[f"few_shot_knn:{shots}"]["top1"]) for shots in SHOTS]
        lines.append(f"| {entry['label']} | " + " | ".join(cells) + " |")
    lines += _probe_lines(result)
    lines += ["", "| block | ms / sample | × embedding | fit s |", "|---|---|---|---|"]
    embedding_ms = next(block for block in document["blocks"] if block["name"] == "embedding")["ms_per_sample"]
    for block in document["blocks"]:
        stored = " (stored)" if block["stored"] else ""
        lines.append(
            f"| {label([block['name']])} | {block['ms_per_sample']:.2f}{stored} | "
            f"{block['ms_per_sample'] / embedding_ms:.1f} | {block['fit_seconds']:.1f} |"
        )
    lines += ["", f"Extraction {result['extract_seconds']:.0f} s, scoring {result['score_seconds']:.0f} s."]
    if result["pca_check"]:
        check = result["pca_check"]
        lines.append(
            f"PCA check (emb + KL, split 1): randomised SVD {100 * check['randomized']:.2f}% vs exact "
            f"{100 * check['covariance_eigh']:.2f}% top-1."
        )
    return "\n".join(lines)


def _accuracy_table(rows: list[dict]) -> list[str]:
    """Every feature set's scores under the headline protocols, and its kNN gain over the embedding."""
    embedding = next(row for row in rows if row["features"] == ["embedding"])["scores"]["knn"]["top1"]
    shot = f"few_shot_knn:{HEADLINE_SHOTS}"
    lines = [
        "| features | kNN top-1 (PCA) | mean/class (PCA) | top-1 (no PCA) | mean/class (no PCA) | "
        f"{HEADLINE_SHOTS}-shot top-1 | {HEADLINE_SHOTS}-shot mean/class | Δ vs embedding |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        scores = row["scores"]
        name = row["label"] if row["gradient"] or row["features"] == ["embedding"] else f"*no gradient: {row['label']}*"
        cells = [
            _pm(scores["knn"]["top1"]),
            _pm(scores["knn"]["mean_per_class"]),
            _pm(scores["knn_no_pca"]["top1"]),
            _pm(scores["knn_no_pca"]["mean_per_class"]),
            _pm(scores[shot]["top1"]),
            _pm(scores[shot]["mean_per_class"]),
            "-"
            if row["features"] == ["embedding"]
            else f"{100 * np.mean(np.subtract(scores['knn']['top1'], embedding)):+.1f}",
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _comparison_table(rows: list[dict]) -> list[str]:
    """Each gradient feature set against its control and its best no-gradient alternative, with the verdict."""
    lines = [
        "| features | Δ vs control (control) | Δ vs best no-gradient alternative (alternative) | verdict |",
        "|---|---|---|---|",
    ]
    for row in rows:
        if not row["gradient"]:
            continue
        control, alternative = (row["comparisons"]["knn"][key] for key in ("control", "alternative"))
        same = alternative["reference"] == control["reference"]
        cells = [_against(control), "the control" if same else _against(alternative), row["verdict"]]
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    return lines


def _probe_lines(result: dict) -> list[str]:
    if not result["probe_verdicts"]:
        return []
    lines = [
        "",
        f"Linear probe (PCA 512, L2 swept on a 20% validation split) and k-means AMI on the test set, "
        f"{result['n_probe_splits']} split(s):",
        "",
        "| features | probe top-1 | probe mean/class | k-means AMI (x100) |",
        "|---|---|---|---|",
    ]
    for entry in result["headline"].values():
        probe = entry["probe"]
        lines.append(
            f"| {entry['label']} | {_pm(probe['top1'])} | {_pm(probe['mean_per_class'])} | "
            f"{_pm(entry['kmeans']['ami'])} |"
        )
    features = result["headline"]["fungi"]["features"]
    fungi = next(row for row in result["evaluation"]["rows"] if row["features"] == features)
    knn = fungi["verdict"]
    probe = result["probe_verdicts"]
    stronger = min(probe.values(), key=lambda comparison: comparison["gain"])
    sentence = (
        f"{fungi['label']} with the linear probe: against its control {_against(probe['control'])}"
        + (f", against its best alternative {_against(probe['alternative'])}" if "alternative" in probe else "")
        + f"; verdict {stronger['verdict']} (kNN: {knn})."
    )
    if stronger["verdict"] != knn:
        sentence += " **The kNN and the linear probe disagree.**"
    return [*lines, "", sentence]


def plot_few_shot(results: Sequence[dict], path: Path) -> None:
    """Accuracy vs shots per pair: embedding, embedding + all gradients, its control (and its alternative)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.4), squeeze=False)
    styles = {"embedding": "o-", "fungi": "s-", "control": "^--", "alternative": "v:"}
    for axis, result in zip(axes[0], results, strict=True):
        for name, entry in result["headline"].items():
            values = [100 * np.asarray(entry["curve"][f"few_shot_knn:{s}"]["top1"]) for s in SHOTS]
            means = [value.mean() for value in values]
            stds = [value.std(ddof=1) if len(value) > 1 else 0.0 for value in values]
            axis.errorbar(SHOTS, means, yerr=stds, fmt=styles[name], capsize=3, label=entry["label"])
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
