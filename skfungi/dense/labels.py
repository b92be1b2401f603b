"""Label maps: validation and lazy decoding, pooling to the patch grid, class scores back to pixels.

A label map holds one class id per pixel (``(H, W)`` integers, as Pascal VOC's
palette PNGs do); ``ignore_index`` marks pixels that count nowhere (VOC's
object boundaries, 255). Accepted forms: an ``(N, H, W)`` integer array or
tensor, or a list of ``(H, W)`` integer arrays, PIL images (palette ``"P"``,
grey ``"L"`` or ``"I"``) or paths to such image files.

Class ids are any int64 >= 0 (``2**40`` as well as 3): they are never used as
indices, only looked up among the sorted ids of the support set. The ignore
index may be negative (``-1``); any other negative id is refused, as is an
unsigned id beyond int64's range.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..inputs.lazy import LazySequence

__all__ = ["as_label_maps", "patch_label_counts", "read_label_map", "upsample_scores"]


def as_label_maps(y, n_images: int | None = None, ignore_index: int | None = None) -> LazySequence:
    """Check ``y`` is a collection of label maps (``n_images`` of them, when given) and wrap it:
    the maps are decoded on access to ``(H, W)`` int64 arrays (negative ids refused, but ``ignore_index``)."""
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
    return LazySequence(y, functools.partial(_decode, ignore_index=ignore_index))


def read_label_map(path) -> np.ndarray:
    """The class ids stored in a label image file (palette or grey PNG): ``(H, W)`` int64."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            return _from_pil(image, f"label image {os.fspath(path)!r}")
    except OSError as error:
        raise ValueError(f"cannot read label image {os.fspath(path)!r}: {error}") from error


def _decode(item, index: int, ignore_index: int | None) -> np.ndarray:
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
    return _checked_ids(array, f"mask {index}", ignore_index)


def _checked_ids(array: np.ndarray, where: str, ignore_index: int | None) -> np.ndarray:
    """``array`` as int64 class ids, after refusing ids beyond int64 and negative ids other than ``ignore_index``."""
    if array.dtype == np.uint64 and array.size and array.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{where} holds class id {array.max()}, beyond int64's range; class ids must be below 2**63.")
    ids = array.astype(np.int64, copy=False)
    negative = ids[(ids < 0) & (ids != ignore_index)] if ignore_index is not None else ids[ids < 0]
    if negative.size:
        value = int(negative[0])
        raise ValueError(
            f"{where} holds the negative class id {value}; class ids must be >= 0 (only ignore_index, now "
            f"{ignore_index}, may be negative: pass ignore_index={value} if {value} marks pixels that count nowhere)."
        )
    return ids


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


def patch_label_counts(mask: np.ndarray, grid_shape: tuple[int, int], classes: np.ndarray) -> np.ndarray:
    """Pixels of each class under each patch: ``(h * w, len(classes))`` counts, in grid order.

    Patch ``(i, j)`` of an ``h x w`` grid covers the mask's rows
    ``floor(i H / h)`` to ``floor((i + 1) H / h) - 1`` (and likewise for
    columns): the image is resized whole to the backbone's square, so a patch
    covers the same fraction of the original image. Column ``c`` counts the
    id ``classes[c]`` (``classes`` sorted, as ``support_classes`` gives them);
    a pixel whose id is not among them (``ignore_index``) counts nowhere. Ids
    are looked up by binary search, so their size never sets a table's.
    """
    height, width = mask.shape
    rows, cols = grid_shape
    row_of = np.arange(height) * rows // height
    col_of = np.arange(width) * cols // width
    cell = (row_of[:, None] * cols + col_of[None, :]).ravel()
    ids = mask.ravel()
    column = np.searchsorted(classes, ids)  # where the id sits among the sorted class ids
    valid = column < len(classes)
    valid[valid] = classes[column[valid]] == ids[valid]
    n_classes = len(classes)
    counts = np.bincount(cell[valid] * n_classes + column[valid], minlength=rows * cols * n_classes)
    return counts.reshape(rows * cols, n_classes)


def upsample_scores(scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of ``(h, w, C)`` class scores to ``(H, W, C)`` (pixel centres aligned)."""
    grid = torch.from_numpy(np.ascontiguousarray(scores.transpose(2, 0, 1)))[None]
    upsampled = F.interpolate(grid, size=tuple(size), mode="bilinear", align_corners=False)
    return upsampled[0].permute(1, 2, 0).numpy()
