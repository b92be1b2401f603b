"""Mean intersection over union of label maps, accumulated over a whole data set."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np

__all__ = ["mean_iou"]


def mean_iou(masks_true: Iterable, masks_pred: Iterable, *, ignore_index: int | None = 255, labels=None) -> float:
    """Mean over classes of ``TP / (TP + FP + FN)``, with counts summed over every pixel of every image.

    This is the Pascal VOC / ADE20K convention: one confusion matrix for the
    data set, not a mean of per-image scores. Pixels whose true label is
    ``ignore_index`` count nowhere.

    Parameters
    ----------
    masks_true, masks_pred : iterables of (H, W) integer arrays
        Pairs of label maps of equal shapes (any iterables, consumed once:
        predictions can be generated on the fly). Labels are any int64
        values, however large or negative.
    ignore_index : int or None, default=255
    labels : array-like of int, optional
        The classes averaged over. Default: every class present in the truth
        or in the predictions (a class never present anywhere has no IoU).

    Returns
    -------
    miou : float
        A fraction in [0, 1] (``100 * miou`` is the mIoU in % of the docs'
        tables); ``nan`` when no class is averaged over.

    Examples
    --------
    >>> import numpy as np
    >>> from skfungi.dense import mean_iou
    >>> truth = np.array([[0, 0, 1, 1]])
    >>> pred = np.array([[0, 1, 1, 1]])
    >>> round(mean_iou([truth], [pred]), 4)  # class 0: 1/2, class 1: 2/3
    0.5833
    """
    confusion: Counter = Counter()
    for index, (truth, pred) in enumerate(zip(masks_true, masks_pred, strict=True)):
        truth, pred = np.asarray(truth), np.asarray(pred)
        if truth.shape != pred.shape:
            raise ValueError(f"image {index}: the truth has shape {truth.shape}, the prediction {pred.shape}.")
        keep = truth != ignore_index if ignore_index is not None else np.ones(truth.shape, dtype=bool)
        confusion.update(_pair_counts(truth[keep].astype(np.int64), pred[keep].astype(np.int64)))
    classes = sorted({c for pair in confusion for c in pair}) if labels is None else list(labels)
    ious = []
    for label in classes:
        hits = confusion.get((label, label), 0)
        true_total = sum(count for (t, _), count in confusion.items() if t == label)
        pred_total = sum(count for (_, p), count in confusion.items() if p == label)
        union = true_total + pred_total - hits
        if union:
            ious.append(hits / union)
    return float(np.mean(ious)) if ious else float("nan")


def _pair_counts(truth: np.ndarray, pred: np.ndarray) -> dict[tuple[int, int], int]:
    """Pixels of each ``(true, predicted)`` pair of labels, for 1-D int64 labels of any values.

    The labels present are numbered ``0 .. n - 1`` first (``np.unique``), so
    that a pair fits in one int64 code, ``n * true + predicted``, whatever the
    ids (``2**40``, or a negative one).
    """
    labels, numbers = np.unique(np.concatenate([truth, pred]), return_inverse=True)
    n = len(labels)
    codes, counts = np.unique(numbers[: len(truth)] * n + numbers[len(truth) :], return_counts=True)
    pairs = zip(labels[codes // n].tolist(), labels[codes % n].tolist(), strict=True)
    return dict(zip(pairs, counts.tolist(), strict=True))
