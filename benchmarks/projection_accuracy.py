"""kNN accuracy of two projections side by side, paired on the same random stratified splits.

For each pair, :func:`skfungi.evaluation.evaluate` runs once per projection (by default the dense
``rademacher`` matrix and ``srht``) on the embedding, the embedding with each gradient block and
with all of them, with the paper's kNN protocol; :func:`skfungi.evaluation.compare_runs` pairs the
two runs split by split. Both runs share the pair's block store under ``--cache-dir``: the
embedding and the no-gradient view blocks, which no projection touches, are extracted once, and
the gradient blocks that ``benchmarks/accuracy.py --projection NAME`` stored are read again::

    .venv/bin/python benchmarks/projection_accuracy.py --pairs vision text --splits 30

For any other data, the same is two runs of ``skfungi evaluate`` (``--projection``) and
``skfungi evaluate --compare A.json B.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: the benchmarks package

from benchmarks.evidence import data
from skfungi.evaluation import compare_runs, evaluate


def feature_sets(losses: list[str]) -> list[tuple[str, ...]]:
    """The embedding, the embedding with each gradient block, and with all of them."""
    sets = [("embedding",)] + [("embedding", loss) for loss in losses]
    return sets + ([("embedding", *losses)] if len(losses) > 1 else [])


def compare_pair(name: str, projections: tuple[str, str], cache_dir: Path, n_splits: int, quick: bool):
    pair = data.PAIR_BUILDERS[name](**(data.QUICK_SIZES[name] if quick else {}))
    reports = []
    for projection in projections:
        print(f"[{name}] {projection} ...", flush=True)
        reports.append(
            evaluate(
                pair.backbone,
                pair.pool,
                pair.labels,
                losses=list(pair.losses.values()),
                layer=pair.layer,
                projection=projection,
                feature_sets=feature_sets(list(pair.losses)),
                splits=n_splits,
                train_size=pair.n_train,
                test_size=pair.n_test,
                fit_samples=pair.fit_samples,
                batch_size=pair.batch_size,
                output_dir=Path(cache_dir) / name,
                data_name=name,
            )
        )
    return compare_runs(*reports), reports


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", nargs="+", choices=sorted(data.PAIR_BUILDERS), default=["vision", "text"])
    parser.add_argument("--projections", nargs=2, default=["rademacher", "srht"], metavar=("A", "B"))
    parser.add_argument("--splits", type=int, default=5, help="random stratified splits (default 5, as accuracy.py)")
    parser.add_argument("--quick", action="store_true", help="the pairs' small --quick pools")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "skfungi-accuracy")
    args = parser.parse_args(argv)
    projections = tuple(args.projections)
    for name in args.pairs:
        comparison, _ = compare_pair(name, projections, args.cache_dir, args.splits, args.quick)
        print(f"\n[{name}] B = {projections[1]} against A = {projections[0]}")
        print(comparison.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
