"""Every pair through :func:`skfungi.evaluation.evaluate`, plus the few-shot curve, the probe and k-means.

The harness is ``skfungi evaluate`` on each pair, with the pair's own
settings: :func:`skfungi.evaluation.evaluate` extracts every block once (the
embedding, each loss's gradients, and beside each loss with views of its own
the mean embedding of the same views without gradient: the no-gradient
control), each by its own transformer fitted on the pair's fit set (outside
the pool: SimCLR's negative bank never holds a test sample), keeps them in a
block store under ``--cache-dir``, and scores every combination of
{embedding, KL, DINO, SimCLR} and every feature set without gradients on
random stratified splits of the pool with the protocols of
:mod:`skfungi.protocols`:

* kNN (k = 20, uniform vote, Euclidean) after PCA to ``min(512, width,
  n_train)`` fitted on the training features (the paper's protocol), and
  without PCA; top-1 and mean-per-class accuracy;
* 5-shot kNN (the first 5 training samples per class of the split, k = min(20, shots)).

Each gradient feature set is compared split by split with its matched control
and with the best no-gradient feature set of equal or lower cost; the verdict
is stated on the stronger comparison (:mod:`skfungi.evaluation.verdict`).

On top of that, for the *headline* feature sets (the embedding, embedding +
all gradients, its control, and its best no-gradient alternative): the
few-shot curve (1, 2, 5, 10, 20, 50 shots) on every split, and the linear
probe and k-means AMI on the first ``probe_splits`` splits, through the same
:func:`skfungi.evaluation.score_feature_sets`; where the probe's verdict on
embedding + all gradients differs from the kNN's, the report says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from skfungi.evaluation import compare_paired, control_of, evaluate, score_feature_sets, set_label

from ..timing import timed
from .data import Pair

SHOTS = (1, 2, 5, 10, 20, 50)
HEADLINE_SHOTS = 5
PROTOCOLS = ("knn", "knn_no_pca", f"few_shot_knn:{HEADLINE_SHOTS}")
UNITS = {"image": "image", "text": "text", "audio": "clip"}


def label(blocks) -> str:
    """``emb + KL + DINO views``-style name of a feature set (as the evaluation's tables)."""
    return set_label(tuple(blocks))


def headline_sets(report) -> dict[str, tuple[str, ...]]:
    """Embedding, embedding + all gradients (FUNGI), its matched control and its best no-gradient alternative."""
    names = list(report.blocks)
    everything = ("embedding", *[name for name in names if name != "embedding" and not name.endswith("_views")])
    alternative = report.result(everything).comparisons["knn"]["alternative"].reference
    sets = {"embedding": ("embedding",), "fungi": everything, "control": control_of(everything, names)}
    if alternative not in sets.values():
        sets["alternative"] = alternative
    return sets


def progress_bars(pair: Pair, quiet: bool = False):
    """The command line's per-sample bars (``skfungi.cli.progress.ProgressBars``) for the pair's samples."""
    from skfungi.backbones import declared_modality, infer_modality
    from skfungi.cli.progress import ProgressBars

    modality = declared_modality(pair.backbone) or infer_modality(pair.pool)
    return ProgressBars(UNITS.get(modality, "sample"), disable=quiet)


def run_pair(
    pair: Pair,
    *,
    cache_dir: Path,
    n_splits: int = 5,
    probe_splits: int = 3,
    pca_check: bool = False,
    random_state: int = 0,
    pca: str = "auto",
    quiet: bool = False,
    log=print,
) -> dict:
    """Evaluate ``pair`` (its blocks stored under ``cache_dir / pair.name``), then its headline extras."""
    log(f"[{pair.name}] {pair.title}")
    log(f"[{pair.name}] pool {len(pair.pool)} samples, fit set {len(pair.fit_samples)}; extracting blocks ...")
    evaluation_seconds, report = timed(
        evaluate_pair, pair, cache_dir=cache_dir, n_splits=n_splits, random_state=random_state, pca=pca, quiet=quiet
    )
    extras_seconds, (extras, check) = timed(headline_extras, report, pair, probe_splits, pca_check, pca)
    timing = {
        "extract_seconds": report.timing["extract_seconds"],
        "score_seconds": report.timing["score_seconds"] + extras_seconds,
        "total_seconds": evaluation_seconds + extras_seconds,
    }
    labels = np.asarray(pair.labels)
    return {
        "pair": pair.name,
        "title": pair.title,
        "projection": str(pair.projection),
        "n_pool": len(pair.pool),
        "n_train": pair.n_train,
        "n_test": pair.n_test,
        "n_classes": len(np.unique(labels)),
        "n_splits": n_splits,
        "n_probe_splits": min(probe_splits, n_splits),
        "evaluation": report.to_dict(),
        "headline": extras,
        "probe_verdicts": probe_verdicts(extras),
        "pca_check": check,
        **timing,
    }


def evaluate_pair(pair: Pair, *, cache_dir: Path, n_splits: int, random_state: int, pca: str, quiet: bool):
    """``skfungi.evaluation.evaluate`` of the pair: every feature set, the paper's protocols, the blocks
    stored under ``cache_dir / pair.name`` (the command line's progress bars unless ``quiet``)."""
    bars = progress_bars(pair, quiet)
    try:
        report = evaluate(
            pair.backbone,
            pair.pool,
            pair.labels,
            losses=list(pair.losses.values()),
            layer=pair.layer,
            projection=pair.projection,
            feature_sets="all",
            protocols=PROTOCOLS,
            splits=n_splits,
            train_size=pair.n_train,
            test_size=pair.n_test,
            fit_samples=pair.fit_samples,
            random_state=random_state,
            batch_size=pair.batch_size,
            output_dir=Path(cache_dir) / pair.name,
            progress=bars,
            data_name=pair.name,
            pca=pca,
        )
    finally:
        bars.close_all()
    return report


def headline_extras(report, pair: Pair, probe_splits: int, pca_check: bool, pca: str) -> tuple[dict, dict | None]:
    """The headline feature sets' few-shot curves, linear probe and k-means (the probe on the first
    ``probe_splits`` splits), and the PCA check when asked for."""
    threads = torch.get_num_threads()  # as many BLAS threads as torch's (see score_feature_sets)
    headline = headline_sets(report)
    labels = np.asarray(pair.labels)
    curves = score_feature_sets(report.blocks, labels, list(headline.values()), report.splits,
                                [f"few_shot_knn:{shots}" for shots in SHOTS], pca=pca, threads=threads)  # fmt: skip
    probed = score_feature_sets(report.blocks, labels, list(headline.values()), report.splits[:probe_splits],
                                ["linear_probe", "kmeans"], pca=pca, threads=threads)  # fmt: skip
    check = _check_pca(report, labels) if pca_check else None
    extras = {
        name: {"label": label(features), "features": list(features), "curve": curves[features],
               "probe": probed[features]["linear_probe"], "kmeans": probed[features]["kmeans"]}
        for name, features in headline.items()
    }  # fmt: skip
    return extras, check


def probe_verdicts(extras: dict) -> dict | None:
    """Embedding + all gradients against its control and its alternative with the linear probe (paired over
    the probed splits), to set beside the kNN's verdict."""
    fungi = extras["fungi"]["probe"]["top1"]
    if len(fungi) == 0:
        return None
    verdicts = {}
    for name in ("control", "alternative"):
        if name in extras:
            reference = tuple(extras[name]["features"])
            verdicts[name] = compare_paired(fungi, extras[name]["probe"]["top1"], reference).to_dict()
    return verdicts


def _check_pca(report, labels: np.ndarray) -> dict:
    """kNN accuracy of emb + the first gradient block with the randomised PCA against the exact
    (covariance) PCA, on the first split."""
    from skfungi.protocols import PAPER_PCA_DIMENSIONS, CappedPCA, evaluate_knn

    gradient = next(name for name in report.blocks if name != "embedding" and not name.endswith("_views"))
    features = np.hstack([report.blocks[name].features for name in ("embedding", gradient)])
    split = report.splits[0]
    train, test = features[split.train], features[split.test]
    scores = {}
    for solver in ("randomized", "covariance_eigh"):
        pca = CappedPCA(PAPER_PCA_DIMENSIONS, svd_solver=solver, random_state=0).fit(train)
        knn = evaluate_knn(pca.transform(train), labels[split.train], pca.transform(test), labels[split.test],
                           n_components=None)  # fmt: skip
        scores[solver] = knn["top1"]
    return scores
