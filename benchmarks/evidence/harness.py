"""Blocks once per pair (cached on disk), then every feature set and its control scored on random splits.

For each pair every block is computed ONCE on a fixed pool of samples, each
with its own :class:`~skfungi.FungiTransformer` (same ``random_state``, so the
blocks are the columns one transformer with every block would give) fitted on
a separate set of samples outside the pool (the SimCLR negative bank comes
from it, never from a test sample): the embedding, each loss's gradients, and
beside each loss that uses views (DINO, SimCLR) the mean embedding of the same
views without gradient (``dino_views``, ``simclr_views``: the no-gradient
control). :func:`skfungi.cli.demo.extract_blocks` computes them, as in the demo.

Then random stratified train / test splits are drawn from the pool and, on
each, every non-empty combination of {embedding, KL, DINO, SimCLR} (DINO for
images only) and every control is scored with :mod:`skfungi.protocols`:

* kNN (``evaluate_knn``: k = 20, uniform vote, Euclidean) after PCA to
  ``min(512, width, n_train)`` fitted on the training features (the paper's
  protocol), and without PCA; top-1 and mean-per-class accuracy;
* 5-shot kNN (``evaluate_few_shot_knn``: the first 5 training samples per
  class of the split, k = min(20, shots));
* a few-shot curve (1, 2, 5, 10, 20, 50 shots) for the embedding,
  embedding + all gradients, and its control;
* the paper's linear probe and k-means AMI on the test set, on the PCA
  features, for the same three feature sets (on the first ``probe_splits``).

A combination's gain counts only where it beats its control by more than the
spread: the largest of the std over splits of the combination, of the control
and of their paired difference.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedShuffleSplit

from skfungi.cli.demo import Block, control_of, demo_blocks, extract_blocks, mean_std
from skfungi.protocols import (
    PAPER_PCA_DIMENSIONS,
    CappedPCA,
    evaluate_few_shot_knn,
    evaluate_kmeans,
    evaluate_knn,
    evaluate_linear_probe,
)

from .data import Pair

LOSS_LABELS = {"embedding": "emb", "kl": "KL", "dino": "DINO", "simclr": "SimCLR"}
SHOTS = (1, 2, 5, 10, 20, 50)
HEADLINE_SHOTS = 5
# Above this many features x training samples, PCA uses seeded randomised SVD (see pca_solver).
EXACT_PCA_MAX_WIDTH = 2048
EXACT_SVD_MAX_SAMPLES = 1000


# -- features --------------------------------------------------------------------------------


def cache_folder(pair: Pair, cache_dir: Path) -> Path:
    """Where the blocks of ``pair`` are cached (one folder per pair settings, projection included)."""
    return Path(cache_dir) / f"{pair.name}-{pair.cache_key()}"


def pair_splits(pair: Pair, n_splits: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(train, test)`` index arrays of the pair's random stratified splits (seed 0: the same on every run)."""
    splitter = StratifiedShuffleSplit(n_splits=n_splits, train_size=pair.n_train, test_size=pair.n_test, random_state=0)
    return list(splitter.split(np.zeros(len(pair.labels)), pair.labels))


def load_or_extract_blocks(
    pair: Pair, cache_dir: Path, random_state: int = 0, log=print
) -> tuple[dict[str, Block], set[str]]:
    """Every block of ``pair`` on its pool, each computed once or read from ``cache_dir``.

    Returns
    -------
    blocks : dict of str to Block
        ``embedding``, one per loss, and ``<loss>_views`` per loss that uses views.
    from_cache : set of str
        Names of the blocks read from the cache.
    """
    folder = cache_folder(pair, cache_dir)
    blocks, from_cache = {}, set()
    for name, loss in demo_blocks(pair.losses).items():
        cache_file = folder / f"{name}.npz"
        if cache_file.is_file():
            with np.load(cache_file) as stored:
                blocks[name] = Block(
                    name, stored["features"], float(stored["fit_seconds"]), float(stored["seconds_per_sample"])
                )
            from_cache.add(name)
            log(f"  {name}: read from cache {cache_file}")
            continue
        block = extract_blocks(
            pair.backbone,
            {name: loss},
            pair.fit_samples,
            pair.pool,
            layer=pair.layer,
            projection=pair.projection,
            batch_size=pair.batch_size,
            random_state=random_state,
        )[name]
        folder.mkdir(parents=True, exist_ok=True)
        temporary = cache_file.with_suffix(".tmp.npz")
        np.savez(
            temporary,
            features=block.features,
            seconds_per_sample=block.seconds_per_sample,
            fit_seconds=block.fit_seconds,
        )
        os.replace(temporary, cache_file)
        blocks[name] = block
        log(
            f"  {name}: {block.width} features, {1000 * block.seconds_per_sample:.2f} ms/sample, "
            f"fit {block.fit_seconds:.1f} s"
        )
    return blocks, from_cache


# -- feature sets -----------------------------------------------------------------------------


def block_names(pair: Pair) -> list[str]:
    """The pair's blocks: ``embedding``, each loss, and the controls (``<loss>_views``)."""
    return list(demo_blocks(pair.losses))


def combinations(names: list[str]) -> list[tuple[str, ...]]:
    """Every non-empty combination, in block order, smallest first."""
    return [combo for size in range(1, len(names) + 1) for combo in itertools.combinations(names, size)]


def feature_sets(pair: Pair) -> tuple[list[tuple[str, ...]], dict[tuple[str, ...], tuple[str, ...]]]:
    """Every combination of the embedding and the gradient blocks, and each one's control."""
    combos = combinations(["embedding", *pair.losses])
    controls = {combo: control_of(combo, block_names(pair)) for combo in combos}
    return combos, controls


def label(blocks) -> str:
    """``emb + KL + views(DINO)``-style name of a feature set."""
    return " + ".join(
        f"views({LOSS_LABELS[name.removesuffix('_views')]})" if name.endswith("_views") else LOSS_LABELS[name]
        for name in blocks
    )


def headline_sets(pair: Pair) -> dict[str, tuple[str, ...]]:
    """Embedding, embedding + all gradients (FUNGI), and FUNGI's no-gradient control."""
    everything = ("embedding", *pair.losses)
    return {"embedding": ("embedding",), "fungi": everything, "control": control_of(everything, block_names(pair))}


# -- scoring ----------------------------------------------------------------------------------


def pca_solver(n_samples: int, width: int) -> str:
    """Exact PCA where it is cheap (full SVD for few samples, covariance eigendecomposition for
    narrow features); seeded randomised SVD otherwise (wide features, thousands of samples)."""
    if n_samples <= EXACT_SVD_MAX_SAMPLES:
        return "full"
    if width <= EXACT_PCA_MAX_WIDTH:
        return "covariance_eigh"
    return "randomized"


def paper_pca(train: np.ndarray, solver: str | None = None) -> CappedPCA:
    """The paper's PCA (``min(512, width, n_train)``) fitted on ``train``, with :func:`pca_solver`'s solver."""
    solver = solver or pca_solver(*train.shape)
    return CappedPCA(PAPER_PCA_DIMENSIONS, svd_solver=solver, random_state=0).fit(train)


def evaluate_split(pair: Pair, blocks: dict[str, Block], train_index, test_index, *, probe: bool) -> dict:
    """All scores of one split: per feature set ``full_pca``, ``full_raw``, ``shot5``; the curve, probe and
    k-means for the headline sets."""
    labels = np.asarray(pair.labels)
    y_train, y_test = labels[train_index], labels[test_index]
    combos, controls = feature_sets(pair)
    headline = set(headline_sets(pair).values())
    results = {}
    for blocks_of_set in dict.fromkeys([*combos, *controls.values()]):
        features = np.hstack([blocks[name].features for name in blocks_of_set])
        train, test = features[train_index], features[test_index]
        pca = paper_pca(train)
        reduced_train, reduced_test = pca.transform(train), pca.transform(test)
        result = results[blocks_of_set] = {
            "full_pca": evaluate_knn(reduced_train, y_train, reduced_test, y_test, n_components=None),
            "full_raw": evaluate_knn(train, y_train, test, y_test, n_components=None),
            f"shot{HEADLINE_SHOTS}": evaluate_few_shot_knn(train, y_train, test, y_test, HEADLINE_SHOTS),
        }
        if blocks_of_set not in headline:
            continue
        result["curve"] = {shots: evaluate_few_shot_knn(train, y_train, test, y_test, shots) for shots in SHOTS}
        if probe:
            result["probe"] = evaluate_linear_probe(
                reduced_train, y_train, reduced_test, y_test, n_components=None, random_state=0
            )
            result["kmeans"] = evaluate_kmeans(reduced_test, y_test, n_components=None, random_state=0)
    return {"sets": results}


def check_pca(pair: Pair, blocks: dict[str, Block], train_index, test_index) -> dict:
    """kNN accuracy of emb + KL with the randomised PCA against the exact (covariance) PCA, one split."""
    features = np.hstack([blocks[name].features for name in ("embedding", next(iter(pair.losses)))])
    labels = np.asarray(pair.labels)
    train, test = features[train_index], features[test_index]
    scores = {}
    for solver in ("randomized", "covariance_eigh"):
        pca = paper_pca(train, solver)
        knn = evaluate_knn(pca.transform(train), labels[train_index], pca.transform(test), labels[test_index],
                           n_components=None)  # fmt: skip
        scores[solver] = knn["top1"]
    return scores


# -- a whole pair -----------------------------------------------------------------------------


def run_pair(
    pair: Pair,
    *,
    cache_dir: Path,
    n_splits: int = 5,
    probe_splits: int = 3,
    pca_check: bool = False,
    random_state: int = 0,
    log=print,
) -> dict:
    """Extract (or load) every block, then score every feature set on ``n_splits`` random splits."""
    start = time.perf_counter()
    log(f"[{pair.name}] {pair.title}")
    log(f"[{pair.name}] pool {len(pair.pool)} samples, fit set {len(pair.fit_samples)}; extracting blocks ...")
    blocks, from_cache = load_or_extract_blocks(pair, cache_dir, random_state, log)
    extracted = time.perf_counter()
    indices = pair_splits(pair, n_splits)
    splits = []
    for index, (train_index, test_index) in enumerate(indices):
        split_start = time.perf_counter()
        splits.append(evaluate_split(pair, blocks, train_index, test_index, probe=index < probe_splits))
        log(f"[{pair.name}] split {index + 1}/{n_splits} scored in {time.perf_counter() - split_start:.0f} s")
    check = None
    if pca_check:
        train_index, test_index = indices[0]
        check = check_pca(pair, blocks, train_index, test_index)
    timing = {"extract_seconds": extracted - start, "score_seconds": time.perf_counter() - extracted}
    return summarise(pair, blocks, from_cache, splits, check, timing)


def verdict(delta: float, spread: float, same: bool) -> str:
    """``GAIN`` / ``LOSS`` beyond the spread, ``within spread``, or ``-`` for a set compared with itself."""
    if same:
        return "-"
    if delta > spread:
        return "GAIN"
    if delta < -spread:
        return "LOSS"
    return "within spread"


def summarise(pair: Pair, blocks, from_cache, splits, pca_check, timing) -> dict:
    """Mean +- std over splits for every set and metric, deltas and verdicts, costs."""
    combos, controls = feature_sets(pair)
    metrics = ["full_pca", "full_raw", f"shot{HEADLINE_SHOTS}"]
    rows = []
    for combo in list(dict.fromkeys([*combos, *controls.values()])):
        row = {"blocks": list(combo), "label": label(combo), "is_control": combo not in combos}
        for metric in metrics:
            for score in ("top1", "mean_per_class"):
                row[f"{metric}.{score}"] = mean_std([split["sets"][combo][metric][score] for split in splits])
        if combo in combos:
            control = controls[combo]
            row["control"] = label(control)
            for reference, key in ((control, "vs_control"), (("embedding",), "vs_embedding")):
                ours = [split["sets"][combo]["full_pca"]["top1"] for split in splits]
                theirs = [split["sets"][reference]["full_pca"]["top1"] for split in splits]
                difference = mean_std(np.subtract(ours, theirs))
                spread = max(difference[1], mean_std(ours)[1], mean_std(theirs)[1])
                row[key] = {
                    "delta": difference,
                    "spread": spread,
                    "verdict": verdict(difference[0], spread, combo == reference),
                }
        rows.append(row)
    headline = {}
    for name, combo in headline_sets(pair).items():
        entry = {"label": label(combo), "curve": {}}
        for shots in SHOTS:
            for score in ("top1", "mean_per_class"):
                entry["curve"][f"{shots}.{score}"] = mean_std([s["sets"][combo]["curve"][shots][score] for s in splits])
        probed = [s["sets"][combo] for s in splits if "probe" in s["sets"][combo]]
        if probed:
            entry["probe.top1"] = mean_std([p["probe"]["top1"] for p in probed])
            entry["probe.mean_per_class"] = mean_std([p["probe"]["mean_per_class"] for p in probed])
            entry["probe.l2_penalty"] = [p["probe"]["l2_penalty"] for p in probed]
            entry["kmeans.ami"] = mean_std([p["kmeans"]["ami"] for p in probed])
            entry["n_probe_splits"] = len(probed)
        headline[name] = entry
    embedding_cost = blocks["embedding"].seconds_per_sample
    costs = [
        {
            "block": name,
            "seconds_per_sample": block.seconds_per_sample,
            "ratio_to_embedding": block.seconds_per_sample / embedding_cost,
            "fit_seconds": block.fit_seconds,
            "from_cache": name in from_cache,
        }
        for name, block in blocks.items()
    ]
    return {
        "pair": pair.name,
        "title": pair.title,
        "n_pool": len(pair.pool),
        "n_train": pair.n_train,
        "n_test": pair.n_test,
        "n_classes": len(np.unique(pair.labels)),
        "n_splits": len(splits),
        "rows": rows,
        "headline": headline,
        "costs": costs,
        "pca_check": pca_check,
        **timing,
    }
