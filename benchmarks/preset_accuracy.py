"""kNN accuracy and cost of each view preset, with several projections side by side (CPU).

ImageNet MobileNetV2 (layer ``features.18.0``) on Fashion-MNIST at ``--input-size`` px.
One run per preset (``--preset``), then ``--plot`` draws every run's JSON.

* Features: ``FungiTransformer(views=preset, random_state=0)`` is fitted on ``--bank``
  training images (SimCLR's negative bank; disjoint from the evaluation pool) and transforms a
  stratified pool of ``--pool`` training images once. Every loss combination is a column slice
  of ``[embedding | KL | DINO | SimCLR]``: each block is L2-normalised on its own, so a slice
  is exactly what ``losses=`` that combination would give.
* Projections: one pass projects the same gradients with every projection of ``--projections``
  (default: the dense Rademacher, the Kronecker and the SRHT projections; ``SideBySide`` below:
  the Kronecker projection of the formed gradient ``G`` is ``P_out G P_in^T``, equal to what
  ``KroneckerProjection`` computes from the factors), each fitted exactly as
  ``projection="rademacher"`` / ``"kronecker"`` / ``"srht"`` would be.
* Accuracy: the paper's kNN (k=20, uniform vote, Euclidean, PCA to 512 capped by the data,
  fitted on the training part) over ``--splits`` random stratified splits of the pool
  (``--test`` test images each); mean +- std in points.
* Cost: seconds per image of each block with each projection, from ``transform`` of
  ``--timing-images`` images per loss (the blocks interleaved, fastest of 2 repeats), relative to
  the embedding forward (``losses=()``); a combination costs its losses plus the embedding (KL
  shares its forward).

Usage::

    .venv/bin/python benchmarks/preset_accuracy.py --preset paper --json /tmp/acc_paper.json
    .venv/bin/python benchmarks/preset_accuracy.py --preset fast --json /tmp/acc_fast.json
    .venv/bin/python benchmarks/presets.py --backbones mobilenet_v2 --input-size 64 --images 16 --repeats 2 \\
        --projection kronecker --json /tmp/presets_kron.json
    .venv/bin/python benchmarks/preset_accuracy.py --plot docs/view_presets.png /tmp/acc_paper.json \\
        /tmp/acc_fast.json --kronecker-costs /tmp/presets_kron.json
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json

import numpy as np
import torch
from sklearn.model_selection import StratifiedShuffleSplit
from timing import fastest, interleaved, stopwatch, timed

from skfungi import FungiTransformer
from skfungi.backbones.mobilenet import mobilenet_v2_backbone
from skfungi.datasets import FASHION_MNIST_DIR, read_idx
from skfungi.projection import FlatGradientProjection, KroneckerProjection, make_projection
from skfungi.protocols import evaluate_knn, feature_blocks

BLOCKS = ("embedding", "kl", "dino", "simclr")
LOSSES = ("kl", "dino", "simclr")


class SideBySide(FlatGradientProjection):
    """Several projections of one gradient, side by side: ``[first (k) | second (k) | ...]``; its
    ``reduce`` (inherited) forms the flattened gradient, from which every projection below starts."""

    def __init__(self, projections=("rademacher", "kronecker", "srht")):
        self.projections = projections

    def fit(self, gradient_shape, n_components, seed):
        self.fitted_ = [make_projection(name).fit(gradient_shape, n_components, seed) for name in self.projections]
        self.gradient_shape_ = tuple(gradient_shape)
        self.n_components_ = len(self.projections) * int(n_components)
        return self

    def project(self, gradients):
        return torch.cat([self._project_one(projection, gradients) for projection in self.fitted_], dim=1)

    def _project_one(self, projection, gradients):
        if isinstance(projection, KroneckerProjection):
            matrices = gradients.reshape(-1, *self.gradient_shape_)
            out_factor, in_factor = projection.out_factor_.to(gradients), projection.in_factor_.to(gradients)
            return (out_factor @ matrices @ in_factor.T).flatten(1)
        return projection.project(gradients)


def pool_and_bank(n_pool: int, n_bank: int, seed: int = 0):
    """A stratified pool of training images and a disjoint set of bank images."""
    images = read_idx(f"{FASHION_MNIST_DIR}/train-images-idx3-ubyte.gz")
    labels = read_idx(f"{FASHION_MNIST_DIR}/train-labels-idx1-ubyte.gz").astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    bank = order[:n_bank]
    rest = order[n_bank:]
    pool_part, _ = next(
        StratifiedShuffleSplit(n_splits=1, train_size=n_pool, random_state=seed).split(rest, labels[rest])
    )
    pool = rest[pool_part]
    return images[pool], labels[pool], images[bank]


def projection_blocks(features: np.ndarray, feature_names, projections: list[str], projection: str):
    """``{block: columns}`` for one projection: the embedding, and that projection's part of each
    loss block (``SideBySide`` order), re-normalised on its own."""
    blocks = {}
    for name, columns in feature_blocks(feature_names).items():
        if name == "embedding":
            blocks[name] = features[:, columns]
            continue
        width = len(columns) // len(projections)
        start = projections.index(projection) * width
        block = features[:, columns[start : start + width]]
        blocks[name] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return blocks


def combinations():
    for size in range(1, len(BLOCKS) + 1):
        yield from itertools.combinations(BLOCKS, size)


def block_seconds(backbone, preset: str, images, bank, batch_size: int, projection: str) -> dict[str, float]:
    """Seconds per image of the embedding forward and of each loss with ``projection``, the blocks
    timed in turn (fastest of 2 repeats)."""
    calls = {}
    for name in ("embedding", *LOSSES):
        fungi = FungiTransformer(
            backbone,
            losses=() if name == "embedding" else (name,),
            views=preset,
            projection=projection,
            device="cpu",
            batch_size=batch_size,
            random_state=0,
        ).fit(bank)
        calls[name] = functools.partial(fungi.transform, images)
    seconds = {name: best / len(images) for name, best in fastest(interleaved(calls, 2)).items()}
    # KL shares the embedding's forward: its cost is what it adds to it
    seconds["kl"] = max(seconds["kl"] - seconds["embedding"], 0.0)
    return seconds


def run(args) -> dict:
    with stopwatch() as total:
        result = evaluate_presets(args)
    return {**result, "wall_seconds": total.wall}


def evaluate_presets(args) -> dict:
    torch.set_num_threads(args.threads)
    images, labels, bank = pool_and_bank(args.pool, args.bank)
    backbone = mobilenet_v2_backbone(input_size=args.input_size)
    projections = args.projections.split(",")
    seconds = {
        projection: block_seconds(
            backbone, args.preset, images[: args.timing_images], bank[:16], args.batch_size, projection
        )
        for projection in projections
    }
    print(f"seconds per image: {seconds}", flush=True)
    fungi = FungiTransformer(
        backbone,
        losses=LOSSES,
        views=args.preset,
        projection=SideBySide(tuple(projections)),
        device="cpu",
        batch_size=args.batch_size,
        random_state=0,
    )
    fungi.fit(bank)
    extraction, features = timed(fungi.transform, images)
    print(f"features {features.shape} in {extraction:.0f} s", flush=True)
    if args.save_features:
        np.savez_compressed(args.save_features, features=features, labels=labels)
    splits = list(
        StratifiedShuffleSplit(n_splits=args.splits, test_size=args.test, random_state=0).split(images, labels)
    )
    results = []
    for projection in projections:
        blocks = projection_blocks(features, fungi.get_feature_names_out(), projections, projection)
        costs = seconds[projection]
        for combination in combinations():
            if projection != projections[0] and combination == ("embedding",):
                continue
            X = np.hstack([blocks[name] for name in combination])
            scores = [evaluate_knn(X[train], labels[train], X[test], labels[test])["top1"] for train, test in splits]
            cost = costs["embedding"] + sum(costs[name] for name in combination if name != "embedding")
            row = {
                "preset": args.preset,
                "projection": projection,
                "blocks": "+".join(combination),
                "top1_mean": 100 * float(np.mean(scores)),
                "top1_std": 100 * float(np.std(scores)),
                "top1_splits": [100 * s for s in scores],
                "seconds_per_image": cost,
                "ratio_to_embedding": cost / costs["embedding"],
            }
            results.append(row)
            print(
                f"{projection:10s} {row['blocks']:28s} {row['top1_mean']:6.2f} +- {row['top1_std']:4.2f}"
                f"  x{row['ratio_to_embedding']:6.1f}",
                flush=True,
            )
    return {
        "preset": args.preset,
        "input_size": args.input_size,
        "pool": args.pool,
        "test": args.test,
        "splits": args.splits,
        "bank": args.bank,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "seconds_per_image": seconds,
        "extraction_seconds": extraction,
        "rows": results,
    }


def kronecker_block_seconds(presets_json: str) -> dict[str, dict[str, float]]:
    """``{preset: {block: seconds per image}}`` from a ``presets.py --projection kronecker`` run."""
    with open(presets_json) as handle:
        result = json.load(handle)["backbones"]["mobilenet_v2"]
    embedding = result["embedding_seconds_per_image"]
    costs = {}
    for row in result["rows"]:
        blocks = costs.setdefault(row["preset"], {"embedding": embedding})
        if row["losses"] == "emb+kl":
            blocks["kl"] = max(row["seconds_per_image"] - embedding, 0.0)
        elif row["losses"] in LOSSES:
            blocks[row["losses"]] = row["seconds_per_image"]
    return costs


def plot(path: str, json_paths: list[str], kronecker_costs: str | None = None) -> None:
    """Accuracy vs cost per preset and loss combination, one panel per projection (Kronecker's costs
    from ``presets.py`` when ``kronecker_costs`` is given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = []
    for json_path in json_paths:
        with open(json_path) as handle:
            runs.append(json.load(handle))
    titles = {"rademacher": "dense Rademacher (the paper's)", "kronecker": "Kronecker", "srht": "SRHT (the default)"}
    projections = list(dict.fromkeys(row["projection"] for run_result in runs for row in run_result["rows"]))
    override = {"kronecker": kronecker_block_seconds(kronecker_costs)} if kronecker_costs else {}
    panels = [(name, titles.get(name, name), override.get(name)) for name in projections]
    figure, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5.5), sharey=True, squeeze=False)
    colors = {"paper": "C0", "fast": "C1"}
    for axis, (projection, title, costs) in zip(axes[0], panels, strict=True):
        for run_result in runs:
            preset = run_result["preset"]
            for row in run_result["rows"]:
                if row["projection"] != projection and row["blocks"] != "embedding":
                    continue
                ratio = row["ratio_to_embedding"]
                if costs is not None:
                    blocks = row["blocks"].split("+")
                    seconds = costs[preset]
                    cost = seconds["embedding"] + sum(seconds[name] for name in blocks if name != "embedding")
                    ratio = cost / seconds["embedding"]
                axis.errorbar(
                    ratio,
                    row["top1_mean"],
                    yerr=row["top1_std"],
                    marker="o" if preset == "paper" else "s",
                    color=colors.get(preset, "C2"),
                    capsize=2,
                    linestyle="none",
                )
                if row["blocks"].startswith("embedding"):
                    label = row["blocks"].replace("embedding", "emb")
                    axis.annotate(label, (ratio, row["top1_mean"]), fontsize=6, alpha=0.8)
        for preset, color in colors.items():
            axis.plot([], [], marker="o" if preset == "paper" else "s", linestyle="none", color=color, label=preset)
        axis.set_xscale("log")
        axis.set_xlabel("seconds per image / embedding forward (log scale)")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend(title="views")
    axes[0][0].set_ylabel("kNN top-1 (%), mean +- std over splits")
    first = runs[0]
    figure.suptitle(
        f"View presets: MobileNetV2 x Fashion-MNIST, {first['input_size']} px, pool {first['pool']}, "
        f"{first['splits']} splits of {first['pool'] - first['test']} / {first['test']}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--pool", type=int, default=1500, help="evaluation pool (train + test)")
    parser.add_argument("--test", type=int, default=500, help="test images per split")
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--bank", type=int, default=256, help="SimCLR negative-bank images (fit)")
    parser.add_argument("--timing-images", type=int, default=32)
    parser.add_argument(
        "--projections",
        default="rademacher,kronecker,srht",
        help="projections computed side by side from the same gradients, comma-separated",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="FungiTransformer batch_size: at most this many views per forward (on a CPU, MobileNetV2 at 224 px "
        "runs 2x faster per image in forwards of 4 than of 32)",
    )
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--save-features", help="also save the extracted features and labels here (.npz)")
    parser.add_argument("--plot", nargs="+", metavar=("PNG", "JSON"), help="draw PNG from run JSON files")
    parser.add_argument("--kronecker-costs", help="presets.py --projection kronecker JSON, for the plot's second panel")
    args = parser.parse_args(argv)
    if args.plot:
        plot(args.plot[0], args.plot[1:], args.kronecker_costs)
        return None
    if args.input_size < 16:
        parser.error("--input-size must be at least 16")
    result = run(args)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
