"""In-context segmentation with dense FUNGI: mIoU, cost of the dense and structured paths, memory banks.

Four sections (``--sections``; the default runs the first three, the evidence, in one command):

``mobilenet``
    The ImageNet MobileNetV2 (offline weights, target layer ``features.18.0``,
    a 1x1 convolution whose positions are the tokens) on synthetic scenes
    (``skfungi.dense.make_segmentation_scenes``: 2-4 Fashion-MNIST objects of
    0.4-0.7 of the 224-px scene's side on crops of scikit-learn's two
    photographs, 11 classes), forwarded at ``--input-size`` (320: 10 x 10
    tokens). Per seed: support
    scenes drawn from Fashion-MNIST's training images, ``--queries`` query
    scenes from its test images; for each support size the transformer is
    fitted on that support set (its patches are the negatives) and ONE
    forward per image gives the three blocks (token, gradient, negatives'
    mean). Three feature sets are compared on the same forwards:
    ``embedding`` (the token), ``fungi`` (token + its projected gradient) and
    ``neighbors`` (token + the mean of its 2 negatives: the no-gradient control
    with the same support index and the same search). Label propagation: a
    memory bank of every support patch (soft labels), k = 30, softmax at
    temperature 0.02, exact search (so that the feature sets are compared
    without approximate-search noise), bilinear upsampling, mIoU over the
    query set. The first query scenes of seed 0 at the largest support size
    are drawn with their truth and predictions (``--figure``).
``dense``
    The exact dense projection (Rademacher, ``k x d_out d_in`` per token) against
    the Kronecker projection, and the embedding alone for reference, each in
    a child process: seconds per image, peak resident memory, mIoU, on seed
    0's first ``--dense-support`` support and ``--dense-queries`` query scenes.
``vit``
    ``InContextSegmenter`` end to end on a randomly initialised timm
    ``vit_small_patch16_224`` (no pretrained ViT installs offline): shows the
    ViT path runs; its mIoU means nothing.
``bank``
    ``PatchMemoryBank`` (hnswlib, ``ef_construction=64``) with 100,000 and
    1,000,000 patches of 768 dimensions (the width of dense FUNGI on a
    ViT-S/16; the "clustered" vectors of ``benchmarks/neighbors.py``),
    streamed in blocks, in a child process each: build time, resident memory
    per million patches, query time, recall@30 against exact search.

Every section runs with ``--threads`` (1) torch and BLAS threads. mIoU is
kept as ``mean_iou`` and ``InContextSegmenter.score`` return it, a fraction in
[0, 1] (the ``miou_fraction`` of the JSON lines printed as sections run), and
reported in percent (``100 x``) in the tables at the end, as in the docs.

Usage::

    nice -n 10 .venv/bin/python benchmarks/segmentation.py                  # mobilenet, dense, vit
    nice -n 10 .venv/bin/python benchmarks/segmentation.py --sections bank  # memory banks of 100k and 1M patches
    .venv/bin/python benchmarks/segmentation.py --quick --sections mobilenet,dense,vit,bank  # ~3 min smoke run
    .venv/bin/python benchmarks/segmentation.py --sections mobilenet --seeds 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

from skfungi.dense import (
    FEATURE_SETS,
    SCENE_CLASSES,
    DenseFungiTransformer,
    InContextSegmenter,
    PatchMemoryBank,
    combine_blocks,
    make_segmentation_scenes,
    mean_iou,
)
from skfungi.dense.propagation import fill_memory_bank, pixel_scores, support_classes

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import current_rss_mb, peak_rss_mb, stopwatch  # the benchmarks' timing module, next to this file

N_NEIGHBORS, TEMPERATURE = 30, 0.02
QUERY_SEED_OFFSET = 10_000  # query scenes of seed s are drawn with random_state QUERY_SEED_OFFSET + s


def scenes(args, seed: int):
    support = make_segmentation_scenes(max(args.sizes), split="train", image_size=args.scene_size, random_state=seed)
    queries = make_segmentation_scenes(
        args.queries, split="test", image_size=args.scene_size, random_state=QUERY_SEED_OFFSET + seed
    )
    return support, queries


def mobilenet(input_size: int):
    from skfungi.backbones.mobilenet import mobilenet_v2_backbone

    return mobilenet_v2_backbone(input_size)


def propagate(support_maps, support_masks, query_maps, size: int, seed: int, algorithm: str = "exact"):
    """Predicted label maps of the queries from a bank of the support patches."""
    classes = support_classes(support_masks, 255)
    bank = PatchMemoryBank(N_NEIGHBORS, TEMPERATURE, algorithm, random_state=seed)
    fill_memory_bank(bank, support_maps, support_masks, classes)
    return [classes[pixel_scores(bank, query, (size, size)).argmax(axis=-1)] for query in query_maps]


# -- section: MobileNetV2 mIoU ------------------------------------------------------------


def run_mobilenet(args) -> dict:
    backbone = mobilenet(args.input_size)
    results = {name: {n: [] for n in args.sizes} for name in FEATURE_SETS}
    seconds = {"fit": 0.0, "transform": 0.0, "images": 0, "propagation": 0.0}
    drawn = None
    for seed in range(args.seeds):
        (support_images, support_masks), (query_images, query_masks) = scenes(args, seed)
        for n in args.sizes:
            dense = DenseFungiTransformer(
                backbone,
                features=("embedding", "gradient", "neighbors"),
                input_size=args.input_size,
                batch_size=8,
                random_state=seed,
            )
            with stopwatch() as fit:
                dense.fit(support_images[:n])
            with stopwatch() as transform:
                support_blocks = dense.transform_blocks(support_images[:n])
                query_blocks = dense.transform_blocks(query_images)
            predictions = {}
            with stopwatch() as propagation:
                for name, blocks in FEATURE_SETS.items():
                    predictions[name] = propagate(
                        combine_blocks(support_blocks, blocks),
                        support_masks[:n],
                        combine_blocks(query_blocks, blocks),
                        args.scene_size,
                        seed,
                    )
                    results[name][n].append(mean_iou(query_masks, predictions[name]))
            seconds["fit"] += fit.wall
            seconds["transform"] += transform.wall
            seconds["propagation"] += propagation.wall
            seconds["images"] += n + len(query_images)
            print(
                f"seed {seed} support {n}: " + ", ".join(f"{name} {results[name][n][-1]:.4f}" for name in FEATURE_SETS),
                flush=True,
            )
            if seed == 0 and n == max(args.sizes):
                shown = slice(0, args.figure_scenes)
                drawn = (query_images[shown], query_masks[shown], {k: v[shown] for k, v in predictions.items()})
    if args.figure and drawn is not None:
        draw_predictions(args.figure, *drawn, n_support=max(args.sizes))
    return {"miou_fraction": results, "seconds": seconds, "grid": list(dense.grid_shape_)}


def draw_predictions(path: str, images, masks, predictions: dict, n_support: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    colours = ListedColormap(plt.get_cmap("tab20").colors[: len(SCENE_CLASSES)])
    columns = [("scene", None), ("truth", masks)] + [(name, predictions[name]) for name in FEATURE_SETS]
    fig, axes = plt.subplots(len(images), len(columns), figsize=(2.2 * len(columns), 2.2 * len(images)))
    for row, image in enumerate(images):
        for col, (title, maps) in enumerate(columns):
            ax = axes[row, col]
            ax.imshow(image) if maps is None else ax.imshow(
                maps[row], cmap=colours, vmin=0, vmax=len(SCENE_CLASSES) - 1
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title)
    handles = [Patch(color=colours(i), label=name) for i, name in enumerate(SCENE_CLASSES)]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=8, frameon=False)
    fig.suptitle(f"MobileNetV2, {n_support} support scenes: predicted masks next to the truth")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=80)
    print(f"figure written to {path}", flush=True)


# -- section: dense against Kronecker projection -----------------------------------------------


def dense_worker(args) -> dict:
    """One projection path in this (child) process: time, peak memory, mIoU."""
    (support_images, support_masks), (query_images, query_masks) = scenes(args, 0)
    support_images, support_masks = support_images[: args.dense_support], support_masks[: args.dense_support]
    query_images, query_masks = query_images[: args.dense_queries], query_masks[: args.dense_queries]
    features = "embedding" if args.worker == "embedding" else "fungi"
    projection = "kronecker" if args.worker == "embedding" else args.worker
    dense = DenseFungiTransformer(
        mobilenet(args.input_size),
        features=features,
        projection=projection,
        input_size=args.input_size,
        batch_size=8,
        random_state=0,
    )
    before = current_rss_mb()
    with stopwatch() as fit:
        dense.fit(support_images)
    with stopwatch() as transform:
        support_maps = dense.transform(support_images)
        query_maps = dense.transform(query_images)
    predictions = propagate(support_maps, support_masks, query_maps, args.scene_size, 0)
    return {
        "path": args.worker,
        "fit_s": fit.wall,
        "s_per_image": transform.wall / (len(support_images) + len(query_images)),
        "rss_before_mb": before,
        "peak_rss_mb": peak_rss_mb(),
        "miou_fraction": mean_iou(query_masks, predictions),
    }


def run_dense(args) -> list[dict]:
    rows = []
    for path in ("embedding", "kronecker", "rademacher"):
        rows.append(_child(args, path))
        print(json.dumps(rows[-1]), flush=True)
    return rows


# -- section: random-init ViT end to end -----------------------------------------------------


def run_vit(args) -> dict:
    from skfungi.backbones import TimmBackbone

    backbone = TimmBackbone("vit_small_patch16_224", pretrained=False)  # random weights: no ViT installs offline
    (support_images, support_masks), (query_images, query_masks) = scenes(args, 0)
    out = {}
    for features in ("embedding", "fungi"):
        seg = InContextSegmenter(
            DenseFungiTransformer(backbone, features=features, random_state=0), n_neighbors=N_NEIGHBORS
        )
        with stopwatch() as elapsed:
            seg.fit(support_images[: args.vit_support], support_masks[: args.vit_support])
            score = seg.score(query_images[: args.vit_queries], query_masks[: args.vit_queries])
        out[features] = {"miou_fraction": score, "seconds": elapsed.wall}
        print(f"vit {features}: {out[features]}", flush=True)
    out["grid"] = list(seg.transformer_.grid_shape_)
    out["width"] = seg.transformer_.n_features_out_
    return out


# -- section: memory banks of 100k-1M patches ----------------------------------------------------

BANK_DIM = 768


def bank_rows(n: int, stream: int):
    """``(rows, one-hot labels)`` blocks of the first ``n`` clustered unit vectors of ``stream`` (1: bank, 2: queries).

    The "clustered" vectors of ``benchmarks/neighbors.py`` (low intrinsic
    dimension, as real features have), their 10 classes as one-hot labels.
    """
    from neighbors import Vectors

    for rows, classes in Vectors("clustered", BANK_DIM, seed=0).rows(n, stream):
        yield rows, np.eye(10, dtype=np.float32)[classes]


def bank_worker(args) -> dict:
    n = args.bank_patches
    queries = np.concatenate([rows for rows, _ in bank_rows(args.bank_queries, stream=2)])
    before = current_rss_mb()
    bank = PatchMemoryBank(N_NEIGHBORS, TEMPERATURE, "hnsw", ef_construction=args.bank_ef_construction)
    with stopwatch() as build:
        for block, (rows, labels) in enumerate(bank_rows(n, stream=1)):
            (bank.fit(rows, labels, expected_patches=n) if block == 0 else bank.partial_fit(rows, labels))
    after = current_rss_mb()
    with stopwatch() as query:
        bank.predict_proba(queries)
    query_s = query.wall / len(queries)
    _, found = bank.index_.search(queries[: args.bank_recall_queries], N_NEIGHBORS)
    exact = _exact_neighbours(queries[: args.bank_recall_queries], n)
    recall = np.mean([len(set(a) & set(b)) / N_NEIGHBORS for a, b in zip(found, exact, strict=True)])
    return {
        "patches": n,
        "build_s": build.wall,
        "index_mb": after - before,
        "mb_per_million": (after - before) / n * 1e6,
        "query_ms": 1e3 * query_s,
        "recall_at_30": float(recall),
        "peak_rss_mb": peak_rss_mb(),
    }


def _exact_neighbours(queries: np.ndarray, n: int) -> np.ndarray:
    best = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_ids = np.empty((len(queries), 0), dtype=np.int64)
    first = 0
    for rows, _ in bank_rows(n, stream=1):
        scores = np.concatenate([best, queries @ rows.T], axis=1)
        ids = np.arange(first, first + len(rows))
        ids = np.concatenate([best_ids, np.broadcast_to(ids, (len(queries), len(rows)))], axis=1)
        keep = np.argsort(-scores, axis=1)[:, :N_NEIGHBORS]
        best, best_ids = np.take_along_axis(scores, keep, 1), np.take_along_axis(ids, keep, 1)
        first += len(rows)
    return best_ids


def run_bank(args) -> list[dict]:
    rows = []
    for n in args.bank_sizes:
        rows.append(_child(args, "bank", ["--bank-patches", str(n)]))
        print(json.dumps(rows[-1]), flush=True)
    return rows


# -- plumbing --------------------------------------------------------------------------------


def _child(args, worker: str, extra: list[str] = ()) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--worker", worker, *args.forwarded, *extra]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(args, results: dict, wall: float) -> None:
    print(f"\n## Results ({wall / 60:.1f} min)\n")
    if "mobilenet" in results:
        section = results["mobilenet"]
        grid = "x".join(map(str, section["grid"]))
        print(
            f"MobileNetV2 at {args.input_size} px ({grid} tokens), {args.queries} query scenes, "
            f"{args.seeds} seeds, mIoU in % (100 x `score`), mean +- std\n"
        )
        print("| support scenes | embedding | fungi | neighbors (control) | fungi - embedding | fungi - control |")
        print("|---|---|---|---|---|---|")
        for n in args.sizes:
            scores = {name: 100 * np.array(section["miou_fraction"][name][n]) for name in FEATURE_SETS}
            cells = [f"{s.mean():.1f} +- {s.std():.1f}" for s in scores.values()]
            gain = scores["fungi"] - scores["embedding"]
            over_control = scores["fungi"] - scores["neighbors"]
            print(
                f"| {n} | " + " | ".join(cells) + f" | {gain.mean():+.1f} +- {gain.std():.1f} | "
                f"{over_control.mean():+.1f} +- {over_control.std():.1f} |"
            )
        seconds = section["seconds"]
        print(
            f"\nfeature extraction: fit {seconds['fit']:.0f} s, transform {seconds['transform']:.0f} s "
            f"({seconds['transform'] / seconds['images']:.3f} s per image, all three blocks), "
            f"label propagation {seconds['propagation']:.0f} s"
        )
    if "dense" in results:
        print(
            f"\nProjection paths, MobileNetV2 at {args.input_size} px, {args.dense_support} support + "
            f"{args.dense_queries} query scenes, one child process each\n"
        )
        print("| path | s / image | peak RSS MB | mIoU % (100 x `score`) |")
        print("|---|---|---|---|")
        for row in results["dense"]:
            percent = 100 * row["miou_fraction"]
            print(f"| {row['path']} | {row['s_per_image']:.3f} | {row['peak_rss_mb']:.0f} | {percent:.1f} |")
    if "vit" in results:
        vit = results["vit"]
        print(
            f"\nRandom-init ViT-S/16 at 224 px ({'x'.join(map(str, vit['grid']))} tokens, fungi width "
            f"{vit['width']}), {args.vit_support} support / {args.vit_queries} query scenes: "
            + ", ".join(
                f"{k} mIoU {100 * v['miou_fraction']:.1f}% in {v['seconds']:.0f} s"
                for k, v in vit.items()
                if isinstance(v, dict)
            )
        )
    if "bank" in results:
        print(
            f"\nMemory bank (hnswlib, M=16, ef_construction={args.bank_ef_construction}, ef=100), "
            f"{BANK_DIM}-d clustered unit vectors, 10 classes\n"
        )
        print("| patches | build s | index MB | MB per million | query ms / patch | recall@30 | peak RSS MB |")
        print("|---|---|---|---|---|---|---|")
        for row in results["bank"]:
            print(
                f"| {row['patches']:,} | {row['build_s']:.0f} | {row['index_mb']:.0f} | "
                f"{row['mb_per_million']:.0f} | {row['query_ms']:.2f} | {row['recall_at_30']:.3f} | "
                f"{row['peak_rss_mb']:.0f} |"
            )


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default="mobilenet,dense,vit", help="any of mobilenet,dense,vit,bank")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    parser.add_argument("--input-size", type=int, default=320)
    parser.add_argument("--scene-size", type=int, default=224)
    parser.add_argument("--object-size", default="0.4,0.7", help="range of an object's side / the scene's")
    parser.add_argument("--sizes", default="10,50,200")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--figure", default="docs/segmentation_masks.png")
    parser.add_argument("--figure-scenes", type=int, default=4)
    parser.add_argument("--dense-support", type=int, default=10)
    parser.add_argument("--dense-queries", type=int, default=20)
    parser.add_argument("--vit-support", type=int, default=10)
    parser.add_argument("--vit-queries", type=int, default=20)
    parser.add_argument("--bank-sizes", default="100000,1000000")
    parser.add_argument("--bank-queries", type=int, default=2000)
    parser.add_argument("--bank-recall-queries", type=int, default=200)
    parser.add_argument("--bank-ef-construction", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="1 seed, small sets: a smoke run")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--bank-patches", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.input_size, args.sizes, args.queries, args.seeds = 224, "4,8", 8, 1
        args.dense_support, args.dense_queries, args.vit_support, args.vit_queries = 4, 4, 4, 4
        args.bank_sizes, args.bank_queries, args.bank_recall_queries = "20000", 200, 50
        args.figure = None
    args.sizes = [int(n) for n in args.sizes.split(",")]
    args.object_size = tuple(float(x) for x in args.object_size.split(","))
    args.bank_sizes = [int(n) for n in args.bank_sizes.split(",")]
    args.forwarded = [
        f"--threads={args.threads}",
        f"--object-size={','.join(map(str, args.object_size))}",
        f"--input-size={args.input_size}",
        f"--scene-size={args.scene_size}",
        f"--sizes={max(args.sizes)}",
        f"--queries={max(args.queries, args.dense_queries)}",
        f"--dense-support={args.dense_support}",
        f"--dense-queries={args.dense_queries}",
        f"--bank-queries={args.bank_queries}",
        f"--bank-recall-queries={args.bank_recall_queries}",
        f"--bank-ef-construction={args.bank_ef_construction}",
    ]
    return args


def main(argv=None) -> None:
    args = parse(argv)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    if args.worker:
        result = bank_worker(args) if args.worker == "bank" else dense_worker(args)
        print(json.dumps(result))
        return
    runners = {"mobilenet": run_mobilenet, "dense": run_dense, "vit": run_vit, "bank": run_bank}
    results = {}
    with stopwatch() as total:
        for section in args.sections.split(","):
            print(f"== {section}", flush=True)
            results[section] = runners[section](args)
    report(args, results, total.wall)


if __name__ == "__main__":
    main()
