"""Compare two runs of the evidence harness (``benchmarks/accuracy.py --json``), feature set by feature set.

For every pair and every feature set present in both runs, prints the kNN top-1 (with PCA, the
paper's protocol) of each run as mean +- std over its splits, their difference (``B - A``, in
points) and whether the difference is within ``--tolerance`` points below A. Both runs must use
the same splits, which the harness draws from its fixed seed, so a difference is that of the
features alone. Typical use: the dense projection against ``--projection kronecker``, with a
tolerance of 0.3 points::

    .venv/bin/python benchmarks/compare_accuracy.py /tmp/acc/full.json /tmp/kron/text-audio.json \\
        --labels "emb + KL" "emb + SimCLR" "emb + KL + SimCLR"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

METRIC = "full_pca.top1"


def load(path: Path) -> dict[str, dict[str, tuple[float, float]]]:
    """``{pair: {feature-set label: (mean, std)}}`` of a finished run, in points."""
    stored = json.loads(Path(path).read_text())
    if not stored.get("complete"):
        raise SystemExit(f"{path} is from a run that did not finish")
    return {
        result["pair"]: {row["label"]: (100 * row[METRIC][0], 100 * row[METRIC][1]) for row in result["rows"]}
        for result in stored["results"]
    }


def compare(first: dict, second: dict, labels: list[str] | None, tolerance: float) -> list[dict]:
    rows = []
    for pair in [name for name in first if name in second]:
        shared = [label for label in first[pair] if label in second[pair]]
        for label in labels or shared:
            if label not in shared:
                continue
            (mean_a, std_a), (mean_b, std_b) = first[pair][label], second[pair][label]
            difference = mean_b - mean_a
            rows.append(
                {
                    "pair": pair,
                    "label": label,
                    "a": (mean_a, std_a),
                    "b": (mean_b, std_b),
                    "difference": difference,
                    "within": difference >= -tolerance,
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
    print(f"| pair | features | A | B | B - A | within {args.tolerance} points |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        (mean_a, std_a), (mean_b, std_b) = row["a"], row["b"]
        print(
            f"| {row['pair']} | {row['label']} | {mean_a:.2f} +- {std_a:.2f} | {mean_b:.2f} +- {std_b:.2f} "
            f"| {row['difference']:+.2f} | {'yes' if row['within'] else 'no'} |"
        )
    worst = min(rows, key=lambda row: row["difference"])
    print(
        f"\nlargest loss of B: {worst['difference']:+.2f} points ({worst['pair']}, {worst['label']}); "
        f"B is within {args.tolerance} points of A on {sum(row['within'] for row in rows)} of {len(rows)} rows"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
