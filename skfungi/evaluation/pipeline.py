"""Does FUNGI help on my data? :func:`evaluate` answers with controls, spread, cost and a verdict."""

from __future__ import annotations

import logging
import numbers
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from .. import _defaults
from .._utils.sample_names import samples_named
from ..protocols import PAPER_N_NEIGHBORS
from .advice import backbone_family, study_advice
from .extraction import estimate_extraction, extract_blocks, plan_blocks, resolve_once, settings_of
from .feature_sets import control_of, is_gradient_set, no_gradient_sets, parse_feature_sets
from .report import EvaluationReport
from .scoring import check_pca_solver, check_protocols, draw_splits, score_feature_sets
from .store import BlockStore, backbone_identity, sample_digest
from .verdict import build_results, recommend

__all__ = ["evaluate"]

logger = logging.getLogger(__name__)


def _take(X, indices):
    """Rows of an array, a DataFrame / Series, or a list, by position."""
    if hasattr(X, "iloc"):
        return X.iloc[indices]
    if isinstance(X, np.ndarray):
        return X[indices]
    return [X[int(index)] for index in indices]


def _check_samples(X) -> None:
    if isinstance(X, (str, bytes)) or not hasattr(X, "__len__") or not hasattr(X, "__getitem__"):
        raise TypeError(
            f"X must be a sequence of samples with a length (a list, an array, a Series...); got {type(X).__name__}."
        )
    if len(X) == 0:
        raise ValueError("X is empty: evaluate needs labelled samples to hold out, train and test on.")


def _checked_labels(y, n_samples: int) -> np.ndarray:
    """``y`` as an array of one label per sample; missing labels and labels of mixed kinds are refused, naming
    the samples (NumPy and scikit-learn failed on them with messages that named neither)."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n_samples:
        raise ValueError(f"y must hold one label per sample: {n_samples} samples, y of shape {y.shape}.")
    missing = [index for index, label in enumerate(y) if _is_missing(label)]
    if missing:
        listed = ", ".join(map(str, missing[:10])) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise ValueError(f"y has no label for sample(s) {listed} (None or NaN); drop those samples or label them.")
    if y.dtype == object:
        kinds = [_kind(label) for label in y]
        if len(set(kinds)) > 1:
            other = next(index for index, kind in enumerate(kinds) if kind != kinds[0])
            raise ValueError(
                f"y mixes labels of different kinds ({', '.join(sorted(set(kinds)))}: sample {other} is "
                f"{y[other]!r}); give labels of one kind, e.g. y.astype(str)."
            )
    return y


def _class_codes(labels: np.ndarray) -> np.ndarray:
    """The classes as codes ``0 .. n_classes - 1`` (in sorted order, so the stratified splits are the same), for
    the classifiers: they take float labels (class ids 0.0, 0.5) as a regression target."""
    return np.unique(labels, return_inverse=True)[1].reshape(-1)


def _is_missing(label) -> bool:
    if label is None:
        return True
    try:
        return bool(label != label)  # NaN
    except (TypeError, ValueError):  # pandas' NA, whose truth value is ambiguous
        return True


def _kind(label) -> str:
    if isinstance(label, (str, bytes)):
        return "strings"
    return "numbers" if isinstance(label, numbers.Number) else type(label).__name__


def _split_fit(X, y: np.ndarray, fit_samples, random_state: int):
    """The pool to score and the samples to fit on: ``fit_samples`` samples held out of ``X``, or given.

    Returns the pool, its labels, the fit samples, and the positions in ``X`` of the pool and of the fit
    samples (None for fit samples given).
    """
    if isinstance(fit_samples, numbers.Integral) and not isinstance(fit_samples, bool):
        if not 0 < fit_samples < len(y) - 3:
            raise ValueError(f"fit_samples={fit_samples} must be between 1 and the number of samples minus 4.")
        indices = np.arange(len(y))
        try:
            pool, fit = train_test_split(indices, test_size=int(fit_samples), stratify=y, random_state=random_state)
        except ValueError:  # a class too small to stratify
            pool, fit = train_test_split(indices, test_size=int(fit_samples), random_state=random_state)
        pool, fit = np.sort(pool), np.sort(fit)
        return _take(X, pool), y[pool], _take(X, fit), pool, fit
    if not _is_sample_sequence(fit_samples):
        raise ValueError(
            "fit_samples must be a number of samples to hold out of X (an int) or the samples to fit on (a non-empty "
            f"sequence); got {repr(fit_samples)[:80]}."
        )
    return X, y, fit_samples, np.arange(len(y)), None


def _is_sample_sequence(value) -> bool:
    return not isinstance(value, (str, bytes, numbers.Number)) and hasattr(value, "__len__") and len(value) > 0


def _description(value) -> str:
    return value if isinstance(value, str) else type(value).__name__


def evaluate(
    backbone,
    X,
    y,
    *,
    losses="auto",
    views: str = _defaults.VIEWS,
    layer: str = _defaults.LAYER,
    projection=_defaults.PROJECTION,
    projection_dim="auto",
    feature_sets="default",
    protocols: Sequence[str] = _defaults.EVALUATION_PROTOCOLS,
    splits: int = _defaults.EVALUATION_SPLITS,
    test_size=_defaults.EVALUATION_TEST_SIZE,
    train_size=None,
    fit_samples=_defaults.EVALUATION_FIT_SAMPLES,
    random_state: int = 0,
    batch_size: int = 32,
    device="auto",
    precision: str = _defaults.PRECISION,
    num_workers: int = 0,
    num_threads=_defaults.NUM_THREADS,
    input_size: int | None = None,
    output_dir=None,
    estimate: bool = False,
    pca: str = "auto",
    memory=None,
    progress=None,
    log: Callable[[str], None] | None = None,
    data_name: str | None = None,
) -> EvaluationReport:
    """Score the embedding, the gradient blocks and their no-gradient controls on your labelled data.

    Every block is extracted once (the embedding, each loss's gradient
    block, and each no-gradient view block: the mean embedding of the same
    views), each by its own :class:`~skfungi.FungiTransformer` so that its
    cost is timed alone. Then each requested feature set, its matched control
    and every feature set without gradients are scored on ``splits`` random
    stratified splits; each gradient set is compared, split by split, with
    its matched control and with the best no-gradient set of equal or lower
    cost, and the verdict is stated on the stronger comparison.

    Parameters
    ----------
    backbone : str, nn.Module or backbone adapter
        As ``FungiTransformer(backbone=...)``; a spec string is loaded once.
    X : sequence of samples
        Images, texts, ``(waveform, rate)`` clips or table rows, as ``FungiTransformer`` takes them.
    y : array-like of shape (n_samples,)
        Their classes: numbers (class ids such as 0.5 included), strings or
        booleans, of one kind; a missing label (None, NaN) is an error naming
        the samples. An error about a sample names its position in ``X``.
    losses, views, layer, projection, projection_dim
        As in ``FungiTransformer`` (the same defaults: the paper's losses for
        the modality, ``"paper"`` views, the SRHT projection). The no-gradient
        view blocks are added for every loss with views of its own.
    feature_sets : "default", "all", str or list of tuples, default="default"
        The rows: ``"default"`` is the embedding, each gradient block alone
        and the embedding with every gradient block; ``"all"`` every
        combination; or e.g. ``"emb+kl,emb+kl+simclr"`` (see
        :func:`~skfungi.evaluation.feature_sets.parse_feature_sets`).
    protocols : sequence of str, default=("knn",)
        ``"knn"`` (the paper's: PCA to 512, k = 20), ``"linear_probe"``,
        ``"few_shot_knn"`` (``"few_shot_knn:<shots>"``), ``"knn_no_pca"``,
        ``"kmeans"``; the first one leads the table and the picture. A
        recommended set must gain beyond the spread on every one.
    splits : int, default=5
    test_size, train_size : float or int
        Of the pool, per split (as ``StratifiedShuffleSplit``).
    fit_samples : int or sequence, default=64
        The samples the transformers are fitted on (SimCLR's negative bank):
        a number of samples held out of ``X`` (stratified, never scored), or the samples themselves.
    random_state : int, default=0
        Seeds the transformers (heads, views, projection), the held-out fit
        samples and the splits.
    batch_size, device, precision, num_workers, num_threads, memory
        As in ``FungiTransformer``.
    input_size : int or None
        Replaces the image backbone's input size (the side of every view).
    output_dir : str, path or None
        Where extracted blocks are kept (``<output_dir>/blocks``): a rerun,
        an interrupted run or a run with more losses, another projection or
        other feature sets extracts only what is missing. None keeps nothing.
    estimate : bool, default=False
        Before extracting, time a few samples and log the expected extraction
        time, and that of the other view preset (``"fast"`` / ``"paper"``).
    pca : {"auto", "full", "covariance_eigh", "randomized"}, default="auto"
        The PCA's solver (see :func:`~skfungi.evaluation.scoring.pca_solver`).
    progress : object or None
        Progress bars, per sample within each block and per feature set
        while scoring (see :func:`~skfungi.evaluation.extract_blocks`), e.g.
        ``skfungi.cli.progress.ProgressBars("image")``.
    log : callable or None
        Receives the messages (the estimate); default: the ``skfungi`` logger.
    data_name : str or None
        The data's name in the tables.

    Returns
    -------
    report : EvaluationReport
        ``report.table()``, ``report.recommendation``, ``report.to_json(path)``, ``report.plot(path)``.
    """
    log = log or logger.info
    start = time.perf_counter()
    if not isinstance(random_state, numbers.Integral) or isinstance(random_state, bool) or random_state < 0:
        raise ValueError(f"random_state must be a non-negative int (the store's keys and the splits use it), "
                         f"got {random_state!r}.")  # fmt: skip
    protocols = check_protocols(protocols)
    check_pca_solver(pca)
    _check_samples(X)
    y = _checked_labels(y, len(X))
    pool, labels, fit, pool_positions, fit_positions = _split_fit(X, y, fit_samples, random_state)
    drawn = draw_splits(labels, splits, train_size=train_size, test_size=test_size, seed=random_state)
    n_train = len(drawn[0].train)
    if n_train < PAPER_N_NEIGHBORS and any(protocol.startswith("knn") for protocol in protocols):
        raise ValueError(
            f"each split trains on {n_train} samples; the kNN protocol votes with {PAPER_N_NEIGHBORS} neighbours: "
            "give more samples (or a larger train size), or score with few_shot_knn."
        )
    from ..backbones import declared_modality, infer_modality

    modality = declared_modality(backbone) or infer_modality(pool)
    blocks_plan = plan_blocks(losses, views, modality)
    names = list(blocks_plan)
    requested = parse_feature_sets(feature_sets, names)
    candidates = no_gradient_sets(names)
    controls = [control_of(feature_set, names) for feature_set in requested if is_gradient_set(feature_set)]
    references = list(dict.fromkeys([*candidates, *controls]))
    positions = (fit_positions, pool_positions)  # errors name a sample by its position in X
    with samples_named(pool_positions[:1]):
        adapter = resolve_once(backbone, _take(pool, [0])[0], random_state=random_state, device=device,
                               input_size=input_size)  # fmt: skip
    options = {
        "layer": layer,
        "projection": projection,
        "projection_dim": projection_dim,
        "batch_size": batch_size,
        "device": device,
        "precision": precision,
        "num_workers": num_workers,
        "num_threads": num_threads,
        "memory": memory,
    }
    store_settings = {
        "samples": sample_digest(pool),
        "fit_samples": sample_digest(fit),
        "backbone": backbone_identity(adapter, backbone if isinstance(backbone, str) else None),
        "modality": modality,
        "precision": precision,
        "skfungi": _version(),
    }
    store = None if output_dir is None else BlockStore(Path(output_dir) / "blocks")
    base = {**store_settings, "random_state": random_state}
    stored = {name for name, loss in blocks_plan.items()
              if store is not None and store.contains(name, settings_of(name, loss, base, options))}  # fmt: skip
    missing = [name for name in names if name not in stored]
    expected = None
    if estimate and missing:
        expected = _estimate(adapter, blocks_plan, fit, pool, losses, views, modality, random_state, options, log,
                             len(names) - len(missing), positions)  # fmt: skip
    extract_start = time.perf_counter()
    blocks = extract_blocks(adapter, blocks_plan, fit, pool, store=store, store_settings=store_settings,
                            progress=progress, random_state=random_state, positions=positions, **options)  # fmt: skip
    score_start = time.perf_counter()
    to_score = list(dict.fromkeys([*requested, *references]))
    if progress is not None:
        progress.open("score", f"scoring on {len(drawn)} splits", total=len(drawn) * len(to_score), unit="set")
    try:
        scores = score_feature_sets(blocks, _class_codes(labels), to_score, drawn, protocols, pca=pca,
                                    threads=_torch_threads(),
                                    on_scored=None if progress is None else lambda: progress("score", 1))  # fmt: skip
    finally:
        if progress is not None:
            progress.close("score")
    costs = {feature_set: sum(blocks[name].seconds_per_sample for name in feature_set) for feature_set in to_score}
    results = build_results(scores, costs, requested, references, names, protocols)
    text, recommended = recommend(results, protocols)
    text += study_advice(backbone_family(adapter, modality, layer), results, protocols[0], recommended)
    done = time.perf_counter()
    settings = {
        "skfungi_version": _version(),
        "backbone": _description(backbone),
        "layer": str(layer),
        "losses": [name for name in names if name != "embedding"],
        "loss_settings": {name: " ".join(repr(loss).split()) for name, loss in blocks_plan.items() if loss is not None},
        "views": str(views),
        "projection": _description(projection),
        "projection_dim": str(projection_dim),
        "random_state": int(random_state),
        "feature_sets": [list(feature_set) for feature_set in requested],
        "protocols": list(protocols),
        "pca": pca,
        "test_size": test_size,
        "train_size": train_size,
        "batch_size": int(batch_size),
        "precision": str(precision),
    }
    if input_size is not None:
        settings["input_size"] = int(input_size)
    data = {
        "name": data_name or "the data",
        "modality": modality,
        "n_samples": len(y),
        "n_pool": len(labels),
        "n_fit": len(fit),
        "n_classes": len(np.unique(labels)),
        "digest": store_settings["samples"],
        "fit_digest": store_settings["fit_samples"],
    }
    timing = {
        "extract_seconds": score_start - extract_start,
        "score_seconds": done - score_start,
        "total_seconds": done - start,
    }
    return EvaluationReport(results, text, recommended, protocols, drawn, blocks, settings, data, timing, expected)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _version() -> str:
    from .._version import __version__

    return __version__


def _estimate(adapter, blocks_plan, fit, pool, losses, views, modality, random_state, options, log, n_stored,
              positions) -> dict:  # fmt: skip
    """Time a few samples of every block, in this preset and in the other one where it changes the views."""
    timing_options = {key: value for key, value in options.items() if key != "memory"}
    timing_options["positions"] = positions
    found = estimate_extraction(adapter, blocks_plan, fit, pool, random_state=random_state, **timing_options)
    result = {"views": views, **found.to_dict(), "alternative": None}
    stored = f" ({n_stored} of {len(blocks_plan)} blocks are stored: only the others are extracted)" if n_stored else ""
    message = (
        f"Expected extraction time on this machine: about {_duration(found.seconds)} for {len(pool)} samples "
        f"({_per_sample(found.seconds_per_sample)} per sample for all {len(blocks_plan)} blocks, timed on "
        f"{found.n_timed} samples){stored}."
    )
    by_name = isinstance(losses, str) or all(isinstance(loss, str) for loss in losses)
    other = "fast" if views == "paper" else "paper"
    if by_name and modality == "image":
        other_plan = plan_blocks(losses, other, modality)
        alternative = estimate_extraction(adapter, other_plan, fit, pool, random_state=random_state, **timing_options)
        result["alternative"] = {"views": other, **alternative.to_dict()}
        message += f" With --views {other}: about {_duration(alternative.seconds)}."
    elif modality != "image":
        message += " (--views changes image views only.)"
    log(message)
    return result


def _per_sample(seconds: float) -> str:
    return f"{1000 * seconds:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
