"""Label propagation, given patch features: filling a memory bank from label maps, scoring pixels.

:class:`~skfungi.dense.InContextSegmenter` computes patch features and hands
them here; the functions also serve features computed once and reused (for
instance several feature sets of one forward, in ``benchmarks/segmentation.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .bank import PatchMemoryBank
from .labels import patch_label_counts, upsample_scores

__all__ = ["PATCH_LABELS", "fill_memory_bank", "patch_labels", "pixel_scores", "support_classes"]

PATCH_LABELS = ("soft", "majority")


def support_classes(masks: Iterable[np.ndarray], ignore_index: int | None) -> np.ndarray:
    """The sorted class ids found in ``masks``, ``ignore_index`` left out."""
    found = set()
    for mask in masks:
        found.update(np.unique(mask).tolist())
    found.discard(ignore_index)
    if not found:
        raise ValueError("the support masks label no pixel (every pixel is ignore_index).")
    return np.array(sorted(found), dtype=np.int64)


def patch_labels(counts: np.ndarray, mode: str = "soft") -> np.ndarray:
    """Label distributions from per-patch pixel counts: the fractions (``"soft"``) or the majority, one-hot."""
    if mode == "majority":
        return np.eye(counts.shape[1], dtype=np.float32)[counts.argmax(axis=1)]
    if mode == "soft":
        return (counts / counts.sum(axis=1, keepdims=True)).astype(np.float32)
    raise ValueError(f"patch labels must be one of {PATCH_LABELS}, got {mode!r}.")


def fill_memory_bank(
    bank: PatchMemoryBank,
    feature_maps: Iterable[np.ndarray],
    masks: Sequence[np.ndarray],
    classes: np.ndarray,
    mode: str = "soft",
) -> PatchMemoryBank:
    """Fit ``bank`` with every patch that has labelled pixels, one ``(h, w, d)`` feature map per mask.

    A patch's label comes from the mask's pixels under it (see
    :func:`~skfungi.dense.labels.patch_label_counts`); pixels whose id is not
    in ``classes`` (sorted, from :func:`support_classes`; ``ignore_index`` is
    not among them) count nowhere, and a patch with none left is not stored.
    """
    for index, feature_map in enumerate(feature_maps):
        grid_shape, width = feature_map.shape[:2], feature_map.shape[-1]
        counts = patch_label_counts(masks[index], grid_shape, classes)
        covered = counts.sum(axis=1) > 0
        rows, labels = feature_map.reshape(-1, width)[covered], patch_labels(counts[covered], mode)
        if index == 0:
            bank.fit(rows, labels, expected_patches=len(masks) * len(counts))
        else:
            bank.partial_fit(rows, labels)
    return bank


def pixel_scores(bank: PatchMemoryBank, feature_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(H, W, n_classes)`` class scores of one image from its ``(h, w, d)`` patch features."""
    grid_scores = bank.predict_proba(feature_map.reshape(-1, feature_map.shape[-1]))
    return upsample_scores(grid_scores.reshape(*feature_map.shape[:2], -1), size)
