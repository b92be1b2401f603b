"""Validate image inputs and decode them, lazily, into float tensors.

Accepted forms (one per call; a list may mix sizes and element kinds):

- ``numpy.ndarray`` of shape ``(N, H, W, C)`` (channels last) or ``(N, H, W)``
  (grey);
- ``torch.Tensor`` of shape ``(N, C, H, W)`` (channels first) or ``(N, H, W)``;
- a list of PIL images, file paths, ``(H, W[, C])`` arrays or ``(C, H, W)``
  tensors.

``uint8`` values are scaled by 1/255; float values must already lie in
[0, 1]. ``C`` is 1 (grey, repeated to the backbone's channels later) or 3.
PIL images are converted to RGB (or kept grey when mode ``"L"``). Nothing else
is coerced: anything outside these rules raises an error that names the
offending sample.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import torch

from .lazy import LazySequence
from .meta import refuse_meta

__all__ = ["as_images"]

_CHANNELS = (1, 3)


def as_images(X) -> LazySequence:
    """Check ``X`` is a collection of images and wrap it for lazy decoding to ``(C, H, W)`` float32 in [0, 1].

    Whole arrays are checked here (shape, dtype, finiteness, range); list
    elements are checked as they are decoded, so a broken file is reported
    with its path and index when its batch is reached.
    """
    if isinstance(X, (np.ndarray, torch.Tensor)):
        return _as_array_images(X)
    if isinstance(X, (str, bytes, os.PathLike)):
        raise TypeError("X must be a collection of images, not a single path; wrap it in a list.")
    if isinstance(X, (list, tuple)):
        if len(X) == 0:
            raise ValueError("X is empty: at least one image is required.")
        return LazySequence(list(X), functools.partial(_decode, channels_last=True))
    raise TypeError(
        "X must be an (N, H, W, C) numpy array, an (N, C, H, W) torch tensor, or a list of "
        f"PIL images / file paths / arrays; got {type(X).__name__}."
    )


def _as_array_images(X) -> LazySequence:
    refuse_meta(X, "X")
    is_tensor = isinstance(X, torch.Tensor)
    layout = "(N, C, H, W) tensor" if is_tensor else "(N, H, W, C) array"
    if X.ndim == 2:
        raise ValueError(
            f"X is a 2-D {type(X).__name__} of shape {tuple(X.shape)}: that looks like tabular "
            f"rows, but this transformer was given an image backbone; expected an {layout}."
        )
    if X.ndim not in (3, 4):
        raise ValueError(f"X must be an {layout} or (N, H, W) grey stack; got shape {tuple(X.shape)}.")
    if X.shape[0] == 0:
        raise ValueError("X is empty: at least one image is required.")
    if X.ndim == 4:
        channels = X.shape[1] if is_tensor else X.shape[3]
        if channels not in _CHANNELS:
            raise ValueError(
                f"X has {channels} channels (shape {tuple(X.shape)}); images must have 1 (grey) "
                f"or 3 (RGB) channels in an {layout}."
            )
    _check_values(X, "X", per_sample=True)
    return LazySequence(X, functools.partial(_decode, channels_last=not is_tensor))


def _check_values(array, where: str, per_sample: bool = False) -> None:
    dtype = array.dtype
    if dtype in (np.uint8, torch.uint8):
        return
    floating = array.is_floating_point() if isinstance(array, torch.Tensor) else np.issubdtype(dtype, np.floating)
    if not floating:
        raise TypeError(f"{where} has dtype {dtype}; images must be uint8 (0-255) or float in [0, 1].")
    values = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else array
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(f"{where} contains NaN or infinite values{_first_sample(bad, per_sample)}.")
    outside = (values < 0) | (values > 1)
    if outside.any():
        raise ValueError(
            f"{where} has float values outside [0, 1]{_first_sample(outside, per_sample)}; pass uint8 images "
            "or floats scaled to [0, 1] (normalisation is the backbone's job)."
        )


def _first_sample(mask: np.ndarray, per_sample: bool) -> str:
    if not per_sample:
        return ""
    first = int(np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))[0])
    return f" (first at sample {first})"


def _decode(item, index: int, channels_last: bool) -> torch.Tensor:
    if isinstance(item, (str, os.PathLike)):
        item = _open_image(item, index)
    if _is_pil(item):
        item = np.asarray(item if item.mode in ("L", "RGB") else item.convert("RGB"))
    if isinstance(item, np.ndarray):
        array = np.ascontiguousarray(item)
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
        if tensor.ndim == 3 and channels_last:
            tensor = tensor.permute(2, 0, 1)
    elif isinstance(item, torch.Tensor):
        refuse_meta(item, f"sample {index}")
        tensor = item.detach().cpu()
    else:
        raise TypeError(
            f"sample {index} is a {type(item).__name__}; expected a PIL image, a file path, an array or a tensor."
        )
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 3 or tensor.shape[0] not in _CHANNELS:
        raise ValueError(
            f"sample {index} has shape {tuple(tensor.shape)}; expected (H, W), (H, W, C) for arrays "
            "or (C, H, W) for tensors, with C = 1 or 3."
        )
    if min(tensor.shape[1:]) < 1:
        raise ValueError(f"sample {index} is empty (shape {tuple(tensor.shape)}).")
    _check_values(tensor, f"sample {index}")
    if tensor.dtype == torch.uint8:
        return tensor.to(torch.float32).div_(255.0)
    return tensor.to(torch.float32)


def _is_pil(item) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow comes with torchvision
        return False
    return isinstance(item, Image.Image)


def _open_image(path, index: int):
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read image file {os.fspath(path)!r} (sample {index}): {error}") from error
