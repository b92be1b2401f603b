"""Two evaluations paired split by split: :func:`compare_runs`.

Each evaluation's JSON keeps every split's score with the split's seed, index
and a digest of its test set, so two runs on the same data (two projections,
two view presets, two versions of a backbone) can be paired afterwards: a
split is paired only where both runs drew the same test set.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .feature_sets import FeatureSet, set_label
from .report import TABLE_WIDTH, EvaluationReport
from .schema import validate_report
from .scoring import primary_metric, protocol_label
from .verdict import Comparison, compare_paired

__all__ = ["RunComparison", "compare_runs", "load_report"]


def load_report(run) -> dict:
    """A run as its JSON document: a path to the file, the document itself, or an :class:`EvaluationReport`."""
    if isinstance(run, EvaluationReport):
        document = run.to_dict()
    elif isinstance(run, dict):
        document = run
    else:
        return _read_report(Path(run))
    validate_report(document)
    return document


def _read_report(path: Path) -> dict:
    """The report in the file ``path``; an unreadable file or one of another shape is named in the error."""
    try:
        text = path.read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read run {str(path)!r}: {error.strerror or error}.") from error
    try:
        document = json.loads(text.decode("utf-8"))
        validate_report(document)
    except ValueError as error:  # JSON's and UTF-8's errors are ValueErrors
        raise ValueError(
            f"run {str(path)!r} is not a report of skfungi evaluate (its --json, or report.to_json): {error}"
        ) from error
    return document


@dataclass
class RunComparison:
    """Feature sets of run B against the same feature sets of run A, paired over their common splits.

    Attributes
    ----------
    rows : list of (tuple of str, Comparison)
        Each feature set both runs scored, with B against A (``gain``: B - A).
    protocol, metric : str
    n_paired : int
        Splits both runs drew identically.
    differences : dict
        The settings in which the runs differ: name -> (A's, B's).
    """

    rows: list[tuple[FeatureSet, Comparison]]
    protocol: str
    metric: str
    n_paired: int
    differences: dict

    def table(self) -> str:
        """The comparison as plain text of at most 88 columns."""
        changed = "; ".join(f"{name}: {a} -> {b}" for name, (a, b) in self.differences.items()) or "none"
        title = (
            f"{protocol_label(self.protocol)} (%), run B against run A on {self.n_paired} paired splits "
            f"(settings that differ: {changed})"
        )
        lines = textwrap.wrap(title, TABLE_WIDTH)
        lines.append(f"{'feature set':<40} {'B - A':>12}  {'B wins':>7}  {'spread':>7}  {'verdict':<13}")
        lines.append("-" * TABLE_WIDTH)
        for features, comparison in self.rows:
            gain = f"{100 * comparison.gain:+.2f} ± {100 * comparison.gain_std:.2f}"
            label = set_label(features)
            label = label if len(label) <= 40 else label.replace(" + ", "+")[:40]
            lines.append(
                f"{label:<40} {gain:>12}  {comparison.wins:>3}/{comparison.n_splits:<3}  "
                f"{100 * comparison.spread:>7.2f}  {comparison.verdict:<13}".rstrip()
            )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "protocol": self.protocol,
            "metric": self.metric,
            "n_paired": self.n_paired,
            "differences": {name: list(values) for name, values in self.differences.items()},
            "rows": [{"features": list(features), **comparison.to_dict()} for features, comparison in self.rows],
        }


def compare_runs(run_a, run_b, *, protocol: str | None = None, allow_other_data: bool = False) -> RunComparison:
    """Pair two evaluations split by split: each feature set of B against the same feature set of A.

    Parameters
    ----------
    run_a, run_b : path, dict or EvaluationReport
        Two evaluations (their ``--json`` files, say).
    protocol : str or None
        A protocol both scored (default: A's first).
    allow_other_data : bool, default=False
        Pair runs whose data digests differ (refused by default: the splits
        would not be the same samples).

    Returns
    -------
    comparison : RunComparison

    Raises
    ------
    ValueError
        If the runs hold other data, share no split, or share no feature set.
    """
    a, b = load_report(run_a), load_report(run_b)
    protocol = protocol or a["protocols"][0]
    for name, document in (("A", a), ("B", b)):
        if protocol not in document["protocols"]:
            raise ValueError(f"run {name} did not score the protocol {protocol!r} (it scored {document['protocols']}).")
    if a["data"]["digest"] != b["data"]["digest"] and not allow_other_data:
        raise ValueError(
            "the two runs evaluated other samples (their data digests differ); pass allow_other_data=True to pair "
            "them anyway."
        )
    identity = lambda split: (split["seed"], split["index"], split["test_digest"])  # noqa: E731
    positions_b = {identity(split): position for position, split in enumerate(b["splits"])}
    paired = [(position, positions_b[identity(split)]) for position, split in enumerate(a["splits"])
              if identity(split) in positions_b]  # fmt: skip
    if not paired:
        raise ValueError("the two runs share no split (same seed, index and test set); they cannot be paired.")
    metric = primary_metric(protocol)
    rows_b = {tuple(row["features"]): row for row in b["rows"]}
    rows = []
    for row in a["rows"]:
        features = tuple(row["features"])
        if features not in rows_b:
            continue
        ours = np.asarray(rows_b[features]["scores"][protocol][metric])[[j for _, j in paired]]
        theirs = np.asarray(row["scores"][protocol][metric])[[i for i, _ in paired]]
        rows.append((features, compare_paired(ours, theirs, features)))
    if not rows:
        raise ValueError("the two runs share no feature set.")
    settings_a, settings_b = _flat(a["settings"]), _flat(b["settings"])
    differences = {
        name: (settings_a.get(name), settings_b.get(name))
        for name in sorted(set(settings_a) | set(settings_b))
        if settings_a.get(name) != settings_b.get(name)
    }
    return RunComparison(rows, protocol, metric, len(paired), differences)


def _flat(settings: dict) -> dict:
    """The settings with an object's entries as entries of their own (``loss_settings.dino``), so that a
    difference names the block whose loss differs."""
    flat = {}
    for name, value in settings.items():
        if isinstance(value, dict):
            flat.update({f"{name}.{key}": item for key, item in value.items()})
        else:
            flat[name] = value
    return flat
