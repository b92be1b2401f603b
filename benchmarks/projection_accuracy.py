"""kNN accuracy of two projections side by side, from the blocks that ``benchmarks/accuracy.py`` cached.

``benchmarks/accuracy.py --projection NAME`` stores every block of a pair (embedding, one per loss)
in its cache folder, keyed by the pair's settings and its projection. This script reads the blocks
of two projections (by default the dense ``rademacher`` and ``srht``) and scores the same feature
sets on the same random stratified splits with the paper's protocol (PCA to ``min(512, width,
n_train)``, then 20-NN, :func:`skfungi.protocols.evaluate_knn`): the difference between the two
columns is that of the projections alone. Blocks missing from either cache are skipped and named.

Fill the caches first (hours on a 2-core CPU: the extraction, not the scoring)::

    .venv/bin/python benchmarks/accuracy.py --pairs vision text --projection rademacher
    .venv/bin/python benchmarks/accuracy.py --pairs vision text --projection srht
    .venv/bin/python benchmarks/projection_accuracy.py --pairs vision text
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: the benchmarks package

from benchmarks.evidence import data
from benchmarks.evidence.harness import cache_folder, pair_splits, paper_pca
from skfungi.protocols import evaluate_knn

PAIRS = {"vision": data.vision_pair, "text": data.text_pair, "audio": data.audio_pair}


def cached_blocks(pair, cache_dir: Path) -> dict[str, np.ndarray]:
    """The blocks of ``pair`` already in ``cache_dir`` (embedding and gradient blocks only)."""
    folder = cache_folder(pair, cache_dir)
    blocks = {}
    for name in ("embedding", *pair.losses):
        path = folder / f"{name}.npz"
        if path.is_file():
            with np.load(path) as stored:
                blocks[name] = stored["features"]
    return blocks


def feature_sets(names: list[str]) -> list[tuple[str, ...]]:
    """The embedding, the embedding with each gradient block, and with all of them."""
    losses = [name for name in names if name != "embedding"]
    sets = [("embedding",)] + [("embedding", loss) for loss in losses]
    if len(losses) > 1:
        sets.append(("embedding", *losses))
    return sets


def score(features: np.ndarray, labels: np.ndarray, splits) -> list[float]:
    """kNN top-1 (points) after the paper's PCA, one value per split."""
    scores = []
    for train_index, test_index in splits:
        train, test = features[train_index], features[test_index]
        pca = paper_pca(train)
        result = evaluate_knn(
            pca.transform(train), labels[train_index], pca.transform(test), labels[test_index], n_components=None
        )
        scores.append(100 * result["top1"])
    return scores


def compare_pair(name: str, projections: tuple[str, str], cache_dir: Path, n_splits: int) -> list[dict]:
    pairs = {projection: PAIRS[name](projection=projection) for projection in projections}
    blocks = {projection: cached_blocks(pair, cache_dir) for projection, pair in pairs.items()}
    first = pairs[projections[0]]
    common = [block for block in blocks[projections[0]] if all(block in found for found in blocks.values())]
    missing = [block for block in ("embedding", *first.losses) if block not in common]
    if missing:
        print(f"[{name}] not in both caches, skipped: {', '.join(missing)}")
    labels = np.asarray(first.labels)
    splits = pair_splits(first, n_splits)
    rows = []
    for feature_set in feature_sets(common):
        start = time.perf_counter()
        per_projection = {
            projection: score(np.hstack([blocks[projection][block] for block in feature_set]), labels, splits)
            for projection in projections
        }
        a, b = (np.asarray(per_projection[projection]) for projection in projections)
        rows.append(
            {"pair": name, "set": " + ".join(feature_set), "a": a, "b": b, "seconds": time.perf_counter() - start}
        )
        print(f"[{name}] {rows[-1]['set']}: scored in {rows[-1]['seconds']:.0f} s", flush=True)
    return rows


def table(rows: list[dict], projections: tuple[str, str]) -> str:
    a_name, b_name = projections
    lines = [
        f"| pair | feature set | {a_name} | {b_name} | {b_name} - {a_name} (mean ± std over splits) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        delta = row["b"] - row["a"]
        lines.append(
            f"| {row['pair']} | {row['set']} | {row['a'].mean():.1f} ± {row['a'].std():.1f} "
            f"| {row['b'].mean():.1f} ± {row['b'].std():.1f} | {delta.mean():+.2f} ± {delta.std():.2f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", nargs="+", choices=sorted(PAIRS), default=["vision", "text"])
    parser.add_argument("--projections", nargs=2, default=["rademacher", "srht"], metavar=("A", "B"))
    parser.add_argument("--splits", type=int, default=5, help="random stratified splits (default 5, as accuracy.py)")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "skfungi-accuracy")
    args = parser.parse_args(argv)
    projections = tuple(args.projections)
    rows = [row for name in args.pairs for row in compare_pair(name, projections, args.cache_dir, args.splits)]
    if not rows:
        print("nothing to compare: run benchmarks/accuracy.py with both projections first")
        return 1
    print()
    print(f"kNN top-1 (%) after PCA, {args.splits} random stratified splits (the same for both projections)")
    print(table(rows, projections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
