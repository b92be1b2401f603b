"""Label maps: validation and lazy decoding, pooling to the patch grid, class scores back to pixels.

A label map holds one class id per pixel (``(H, W)`` integers, as Pascal VOC's
palette PNGs do); ``ignore_index`` marks pixels that count nowhere (VOC's
object boundaries, 255). Accepted forms: an ``(N, H, W)`` integer array or
tensor, or a list of ``(H, W)`` integer arrays, PIL images (palette ``"P"``,
grey ``"L"`` or ``"I"``) or paths to such image files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..inputs.lazy import LazySequence

__all__ = ["as_label_maps", "patch_label_counts", "read_label_map", "upsample_scores"]


def as_label_maps(y, n_images: int | None = None) -> LazySequence:
    """Check ``y`` is a collection of label maps (``n_images`` of them, when given) and wrap it:
    the maps are decoded on access to ``(H, W)`` int64 arrays."""
    if y is None:
        raise ValueError("masks are required: one label map (an (H, W) array of class ids) per image.")
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    if isinstance(y, np.ndarray):
        if y.ndim != 3:
            raise ValueError(f"masks must be an (N, H, W) array of class ids or a list of (H, W) maps; got {y.shape}.")
        _check_dtype(y.dtype, "masks")
    elif isinstance(y, (str, bytes, os.PathLike)) or not isinstance(y, Sequence):
        raise TypeError(
            "masks must be an (N, H, W) integer array, or a list of (H, W) integer arrays, PIL images or "
            f"paths to label images; got {type(y).__name__}."
        )
    if n_images is not None and len(y) != n_images:
        raise ValueError(f"got {len(y)} masks for {n_images} images; give one label map per image.")
    return LazySequence(y, _decode)


def read_label_map(path) -> np.ndarray:
    """The class ids stored in a label image file (palette or grey PNG): ``(H, W)`` int64."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            return _from_pil(image, f"label image {os.fspath(path)!r}")
    except OSError as error:
        raise ValueError(f"cannot read label image {os.fspath(path)!r}: {error}") from error


def _decode(item, index: int) -> np.ndarray:
    if isinstance(item, (str, os.PathLike)):
        array = read_label_map(item)
    elif _is_pil(item):
        array = _from_pil(item, f"mask {index}")
    elif isinstance(item, (np.ndarray, torch.Tensor)):
        array = item.detach().cpu().numpy() if isinstance(item, torch.Tensor) else np.asarray(item)
        _check_dtype(array.dtype, f"mask {index}")
    else:
        raise TypeError(f"mask {index} is a {type(item).__name__}; expected an (H, W) integer array, image or path.")
    if array.ndim != 2:
        raise ValueError(f"mask {index} has shape {array.shape}; a label map is (H, W), one class id per pixel.")
    if array.size and array.min() < 0:
        raise ValueError(f"mask {index} holds negative class ids (min {array.min()}); class ids must be >= 0.")
    return array.astype(np.int64, copy=False)


def _check_dtype(dtype, where: str) -> None:
    if not (np.issubdtype(dtype, np.integer) or dtype == np.bool_):
        raise TypeError(f"{where} has dtype {dtype}; class ids must be integers.")


def _from_pil(image, where: str) -> np.ndarray:
    if image.mode not in ("P", "L", "I", "I;16", "1"):
        raise ValueError(
            f"{where} has mode {image.mode!r}; label maps must be single-channel images of class ids "
            "(palette 'P' as in Pascal VOC, or grey 'L' / 'I'), not colour images."
        )
    return np.asarray(image).astype(np.int64)


def _is_pil(item) -> bool:
    from PIL import Image

    return isinstance(item, Image.Image)


def patch_label_counts(mask: np.ndarray, grid_shape: tuple[int, int], class_index: np.ndarray) -> np.ndarray:
    """Pixels of each class under each patch: ``(h * w, n_classes)`` counts, in grid order.

    Patch ``(i, j)`` of an ``h x w`` grid covers the mask's rows
    ``floor(i H / h)`` to ``floor((i + 1) H / h) - 1`` (and likewise for
    columns): the image is resized whole to the backbone's square, so a patch
    covers the same fraction of the original image. ``class_index`` maps a
    class id to its column (``-1``: the pixel counts nowhere, as
    ``ignore_index`` and ids outside it do).
    """
    height, width = mask.shape
    rows, cols = grid_shape
    row_of = np.arange(height) * rows // height
    col_of = np.arange(width) * cols // width
    cell = (row_of[:, None] * cols + col_of[None, :]).ravel()
    ids = mask.ravel()
    column = np.full(ids.shape, -1, dtype=np.int64)
    known = ids < len(class_index)
    column[known] = class_index[ids[known]]
    valid = column >= 0
    n_classes = int(class_index.max()) + 1 if len(class_index) and class_index.max() >= 0 else 0
    counts = np.bincount(cell[valid] * n_classes + column[valid], minlength=rows * cols * n_classes)
    return counts.reshape(rows * cols, n_classes)


def upsample_scores(scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of ``(h, w, C)`` class scores to ``(H, W, C)`` (pixel centres aligned)."""
    grid = torch.from_numpy(np.ascontiguousarray(scores.transpose(2, 0, 1)))[None]
    upsampled = F.interpolate(grid, size=tuple(size), mode="bilinear", align_corners=False)
    return upsampled[0].permute(1, 2, 0).numpy()
