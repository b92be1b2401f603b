"""Compare two runs of the evidence harness (``benchmarks/accuracy.py --json``), paired split by split.

For every pair and every feature set present in both runs, prints the kNN top-1 (with PCA, the
paper's protocol) of each run as mean +- std over its splits, their difference ``B - A`` paired
split by split (mean +- std, in points; :func:`skfungi.evaluation.compare_runs`) and whether the
mean difference is within ``--tolerance`` points below A. Each run's JSON keeps every split's
score with the split's seed and a digest of its test set, so only identical splits are paired.
Typical use: the dense projection against ``--projection srht``, with a tolerance of 0.3 points::

    .venv/bin/python benchmarks/compare_accuracy.py /tmp/acc/dense.json /tmp/acc/srht.json \\
        --labels "emb + KL" "emb + SimCLR" "emb + KL + SimCLR"

Two runs of ``skfungi evaluate`` pair the same way: ``skfungi evaluate --compare A.json B.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: the benchmarks package

from skfungi.evaluation import compare_runs, set_label


def load(path: Path) -> dict[str, dict]:
    """``{pair: evaluation document}`` of a finished harness run."""
    stored = json.loads(Path(path).read_text())
    if not stored.get("complete"):
        raise SystemExit(f"{path} is from a run that did not finish")
    return {result["pair"]: result["evaluation"] for result in stored["results"]}


def compare(first: dict, second: dict, labels: list[str] | None, tolerance: float) -> list[dict]:
    rows = []
    for pair in [name for name in first if name in second]:
        comparison = compare_runs(first[pair], second[pair])
        means = {
            name: {tuple(row["features"]): (100 * row["mean"], 100 * row["std"]) for row in document["rows"]}
            for name, document in (("a", first[pair]), ("b", second[pair]))
        }
        for features, paired in comparison.rows:
            label = set_label(features)
            if labels and label not in labels:
                continue
            rows.append(
                {
                    "pair": pair,
                    "label": label,
                    "a": means["a"][features],
                    "b": means["b"][features],
                    "difference": 100 * paired.gain,
                    "difference_std": 100 * paired.gain_std,
                    "n_splits": paired.n_splits,
                    "within": 100 * paired.gain >= -tolerance,
                }
            )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path, help="run A (the reference), a --json file of the harness")
    parser.add_argument("second", type=Path, help="run B, compared with A")
    parser.add_argument("--labels", nargs="+", default=None, help="feature sets to compare (default: all shared)")
    parser.add_argument("--tolerance", type=float, default=0.3, help="points B may lose against A (default 0.3)")
    args = parser.parse_args(argv)
    rows = compare(load(args.first), load(args.second), args.labels, args.tolerance)
    if not rows:
        print("the two runs share no pair and feature set", file=sys.stderr)
        return 2
    print(f"kNN top-1 with PCA, mean +- std over splits, points; A = {args.first}, B = {args.second}")
    print(f"| pair | features | A | B | B - A (paired) | within {args.tolerance} points |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        (mean_a, std_a), (mean_b, std_b) = row["a"], row["b"]
        print(
            f"| {row['pair']} | {row['label']} | {mean_a:.2f} +- {std_a:.2f} | {mean_b:.2f} +- {std_b:.2f} "
            f"| {row['difference']:+.2f} +- {row['difference_std']:.2f} | {'yes' if row['within'] else 'no'} |"
        )
    worst = min(rows, key=lambda row: row["difference"])
    print(
        f"\nlargest loss of B: {worst['difference']:+.2f} points ({worst['pair']}, {worst['label']}); "
        f"B is within {args.tolerance} points of A on {sum(row['within'] for row in rows)} of {len(rows)} rows"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
