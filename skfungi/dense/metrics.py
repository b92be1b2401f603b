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
        predictions can be generated on the fly).
    ignore_index : int or None, default=255
    labels : array-like of int, optional
        The classes averaged over. Default: every class present in the truth
        or in the predictions (a class never present anywhere has no IoU).

    Returns
    -------
    miou : float
        ``nan`` when no class is averaged over.

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
        codes, counts = np.unique(_pair_codes(truth[keep], pred[keep]), return_counts=True)
        pairs = zip((codes >> 32).tolist(), (codes & 0xFFFFFFFF).tolist(), strict=True)
        confusion.update(dict(zip(pairs, counts.tolist(), strict=True)))
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


def _pair_codes(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """One int64 per pixel holding its (true, predicted) pair: ``true * 2**32 + predicted``."""
    for values, name in ((truth, "true"), (pred, "predicted")):
        if values.size and (values.min() < 0 or values.max() >= 2**31):
            raise ValueError(f"{name} labels must lie in [0, 2**31); got {values.min()} to {values.max()}.")
    return (truth.astype(np.int64) << 32) | pred.astype(np.int64)
