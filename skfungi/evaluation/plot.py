"""The picture of an evaluation: score against cost per sample, with error bars, controls marked."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .scoring import primary_metric, protocol_label

__all__ = ["plot_report"]


def plot_report(report: dict, path=None, protocol: str | None = None):
    """Draw a report's feature sets: mean score (± std over splits) against extraction cost per sample.

    Gradient feature sets are filled circles, feature sets without gradients
    (the embedding, the view controls and the alternatives) hollow squares;
    a dashed line joins each requested gradient set to the reference its
    verdict is stated against (its matched control or the best alternative).

    Parameters
    ----------
    report : dict
        :meth:`EvaluationReport.to_dict` (or the JSON file's content).
    path : str, path or None
        Where to save the PNG.
    protocol : str or None
        Which protocol's scores (default: the report's first).

    Returns
    -------
    figure : matplotlib.figure.Figure
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    protocol = protocol or report["protocols"][0]
    metric = primary_metric(protocol)
    rows = {tuple(row["features"]): row for row in report["rows"]}

    def point(row):
        values = 100 * np.asarray(row["scores"][protocol][metric], dtype=np.float64)
        spread = values.std(ddof=1) if len(values) > 1 else 0.0
        return max(row["ms_per_sample"], 1e-3), values.mean(), spread

    figure, axis = plt.subplots(figsize=(7.2, 4.6))
    shown = [row for row in report["rows"] if row["requested"]]
    referenced = set()
    for row in shown:
        for key in ("control", "alternative"):
            if row.get(key):
                referenced.add(tuple(row[key]))
    shown += [rows[features] for features in referenced if not rows[features]["requested"]]
    for row in shown:
        cost, mean, spread = point(row)
        if row["gradient"]:
            style = {"fmt": "o", "color": "tab:blue", "markersize": 7}
        else:
            style = {"fmt": "s", "color": "tab:gray", "markerfacecolor": "white", "markersize": 7}
        axis.errorbar(cost, mean, yerr=spread, capsize=3, **style)
        axis.annotate(row["label"], (cost, mean), xytext=(5, 4), textcoords="offset points", fontsize=7)
        if row["requested"] and row["gradient"]:
            comparison = row["comparisons"][protocol]
            stronger = min(comparison.values(), key=lambda found: found["gain"])
            reference = point(rows[tuple(stronger["reference"])])
            axis.plot([cost, reference[0]], [mean, reference[1]], "--", color="tab:blue", alpha=0.35, linewidth=1)
    axis.set_xscale("log")
    low, high = axis.get_xlim()
    axis.set_xlim(low, high * 3)  # room for the labels of the dearest sets
    axis.set_xlabel("extraction time per sample (ms, log scale)")
    axis.set_ylabel(f"{protocol_label(protocol)} (%)")
    data, settings = report.get("data", {}), report.get("settings", {})
    axis.set_title(f"{settings.get('backbone', '')} on {data.get('name', '')}", fontsize=9)
    axis.grid(alpha=0.3)
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="o", linestyle="", color="tab:blue", label="with gradient blocks"),
        Line2D([], [], marker="s", linestyle="", color="tab:gray", markerfacecolor="white",
               label="no gradient (embedding, view controls)"),
    ]  # fmt: skip
    axis.legend(handles=handles, fontsize=7, loc="best")
    figure.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=120)
        plt.close(figure)
    return figure
