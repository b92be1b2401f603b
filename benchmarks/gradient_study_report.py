"""Tables and pictures of benchmarks/gradient_study.py's runs, for docs/where_gradients_help.md.

For every pair and setting: each gradient block against its matched control
(KL: the embedding; DINO, SimCLR: the mean embedding of the same views) and
the embedding with every gradient block against the embedding with every
control, as the runs' reports compare them (paired over the splits; verdict
GAIN / LOSS beyond the spread, the largest std of the two scores and of their
difference), the embedding with every gradient block against the same set
of the default run (paired over the same splits: does the setting beat
today's default?), and the cost of the embedding with every gradient block. The
whitening row scores the default run's blocks after a whitening PCA, on the
same splits.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from skfungi.evaluation.verdict import compare_paired

BLOCKS = {"kl": "KL", "dino": "DINO", "simclr": "SimCLR"}
MARKS = {"GAIN": " ▲", "LOSS": " ▼", "within spread": ""}


def load_runs(folder: Path, settings) -> dict[str, dict]:
    """Setting name -> report document, in the study's order, for the settings that have run."""
    from benchmarks.gradient_study import slug

    paths = {setting.name: folder / f"{slug(setting.name)}.json" for setting in settings}
    return {name: json.loads(path.read_text()) for name, path in paths.items() if path.is_file()}


def row_of(document: dict, features: list[str]) -> dict | None:
    return next((row for row in document["rows"] if row["features"] == features), None)


def comparison(document: dict, features: list[str], reference: str = "control") -> dict | None:
    """The set's comparison with its matched control (or, with ``reference="alternative"``, with the best
    no-gradient set that costs no more) under the leading protocol; gains in points."""
    row = row_of(document, features)
    if row is None:
        return None
    protocol = document["protocols"][0]
    compared = row["comparisons"][protocol][reference]
    return {
        "score": 100 * float(np.mean(row["scores"][protocol][document["metrics"][protocol]])),
        "gain": 100 * compared["gain"],
        "gain_std": 100 * compared["gain_std"],
        "spread": 100 * compared["spread"],
        "wins": compared["wins"],
        "n": compared["n_splits"],
        "verdict": compared["verdict"],
        "ms": row["ms_per_sample"],
        "ratio": row["cost_ratio"],
    }


def whitened_comparison(scores: dict, features: list[str], control: list[str]) -> dict | None:
    return paired(scores.get("+".join(features)), scores.get("+".join(control)))


def paired(ours, theirs) -> dict | None:
    """``ours`` against ``theirs``, two lists of per-split scores (fractions) on the same splits, as
    ``skfungi evaluate`` compares them (:func:`skfungi.evaluation.verdict.compare_paired`), in points."""
    if ours is None or theirs is None:
        return None
    compared = compare_paired(ours, theirs, ())
    return {"score": 100 * float(np.mean(ours)), "gain": 100 * compared.gain, "gain_std": 100 * compared.gain_std,
            "spread": 100 * compared.spread, "wins": compared.wins, "n": compared.n_splits,
            "verdict": compared.verdict, "ms": None, "ratio": None}  # fmt: skip


def split_scores(document: dict, features: list[str]) -> list[float] | None:
    row = row_of(document, features)
    if row is None:
        return None
    protocol = document["protocols"][0]
    return row["scores"][protocol][document["metrics"][protocol]]


def short(setting: str) -> str:
    """A setting's name as the tables show it: shorter layer paths, "temp." for temperature."""
    for long, brief in (
        ("encoder.layer.", ""),
        (".dense", ""),
        ("temperature", "temp."),
        ("layer features.", "layer "),
    ):
        setting = setting.replace(long, brief)
    return setting


def cell(result: dict | None, wins: bool = True) -> str:
    """``+gain ± std (wins/splits)`` in points, marked where beyond the spread; without the wins for the
    pairs' tables, which must fit a page."""
    if result is None:
        return "-"
    won = f" ({result['wins']}/{result['n']})" if wins else ""
    return f"{result['gain']:+.1f} ± {result['gain_std']:.1f}{won}{MARKS[result['verdict']]}"


def pair_table(folder: Path, settings) -> tuple[str, list[str], dict]:
    """The markdown table of one pair, its gradient blocks, and each setting's comparisons."""
    runs = load_runs(folder, settings)
    default = runs["default"]
    blocks = [name for name in BLOCKS if row_of(default, [name]) is not None]
    everything = ["embedding", *blocks]
    controls = ["embedding", *(f"{name}_views" for name in blocks if name != "kl")]
    header = ["setting", *(BLOCKS[name] for name in blocks), "emb + all", "vs best alt.", "vs default",
              "top-1, cost"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    results = {}
    for setting, document in runs.items():
        compared = {name: comparison(document, [name]) for name in blocks}
        compared["all"] = comparison(document, everything)
        alternative = comparison(document, everything, "alternative")
        against_default = (
            None if setting == "default" else paired(*(split_scores(run, everything) for run in (document, default)))
        )
        results[setting] = compared
        score = f"{compared['all']['score']:.1f}, {compared['all']['ratio']:.0f}x" if compared["all"] else "-"
        cells = [cell(compared[name], wins=False) for name in blocks]
        cells += [cell(result, wins=False) for result in (compared["all"], alternative, against_default)]
        cells.append(score)
        lines.append(f"| {short(setting)} | " + " | ".join(cells) + " |")
    whitened_path = folder / "whitened.json"
    if whitened_path.is_file():
        scores = json.loads(whitened_path.read_text())
        compared = {name: whitened_comparison(scores, [name], ["embedding"] if name == "kl" else [f"{name}_views"])
                    for name in blocks}  # fmt: skip
        compared["all"] = whitened_comparison(scores, everything, controls)
        results["whitening PCA before the kNN"] = compared
        score = f"{compared['all']['score']:.1f}, as default" if compared["all"] else "-"
        against_default = paired(scores.get("+".join(everything)), split_scores(default, everything))
        cells = [cell(compared[name], wins=False) for name in blocks]
        cells += [cell(compared["all"], wins=False), "-", cell(against_default, wins=False), score]
        lines.append("| whitened kNN | " + " | ".join(cells) + " |")
    return "\n".join(lines), blocks, results


def pair_picture(title: str, blocks: list[str], results: dict, path: Path) -> None:
    """Gain over the matched control (points, ± std over splits) per setting: one marker per block, and the
    embedding with every gradient block; a filled marker where the gain exceeds the spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(results)
    series = [*blocks, "all"]
    figure, axis = plt.subplots(figsize=(9.5, 0.42 * len(settings) + 1.4))
    for offset, name in zip(np.linspace(-0.25, 0.25, len(series)), series, strict=True):
        for position, setting in enumerate(settings):
            result = results[setting].get(name)
            if result is None:
                continue
            filled = result["verdict"] != "within spread"
            axis.errorbar(result["gain"], position + offset, xerr=result["gain_std"], fmt="o",
                          color=f"C{series.index(name)}", mfc=None if filled else "white", ms=5, capsize=2,
                          label=(BLOCKS.get(name, "emb + all") if position == 0 else None))  # fmt: skip
    axis.axvline(0, color="#555555", linewidth=0.8)
    axis.set_yticks(range(len(settings)), settings, fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel("gain over the matched no-gradient control (kNN top-1 points, mean ± std over splits)")
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(output: Path, pairs: list[str], figures: Path) -> str:
    """The markdown tables of every pair (pictures into ``figures``), as one text."""
    from benchmarks.gradient_study import PAIRS

    figures.mkdir(parents=True, exist_ok=True)
    parts = []
    for name in pairs:
        folder = Path(output) / name
        if not (folder / "default.json").is_file():
            continue
        table, blocks, results = pair_table(folder, PAIRS[name][1])
        default = json.loads((folder / "default.json").read_text())
        data = default["data"]
        title = f"{name}: {data['n_samples']} samples, {data['n_classes']} classes, {len(default['splits'])} splits"
        pair_picture(title, blocks, results, figures / f"where_gradients_help_{name}.png")
        parts.append(f"### {name}\n\n{table}\n\n![{title}](figures/where_gradients_help_{name}.png)\n")
    return "\n".join(parts)
