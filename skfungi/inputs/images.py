"""Validate image inputs and decode them, lazily, into float tensors in [0, 1].

Accepted forms (one per call; a list may mix sizes and element kinds):

- ``numpy.ndarray`` of shape ``(N, H, W, C)`` (channels last) or ``(N, H, W)``
  (grey);
- ``torch.Tensor`` of shape ``(N, C, H, W)`` (channels first) or ``(N, H, W)``;
- a list of PIL images, file paths, ``(H, W[, C])`` arrays or ``(C, H, W)``
  tensors.

Values are mapped to [0, 1] by the depth their type records, never by the
values themselves (a dark 16-bit image is not brightened):

======================================  ===========================
type (PIL mode)                         value in [0, 1]
======================================  ===========================
uint8 (``"L"``, ``"RGB"``)              ``v / 255``
uint16 (``"I;16"``: 16-bit PNG, TIFF)   ``v / 65535``
bool (``"1"``)                          0 or 1
float16/32/64 (``"F"``: float TIFF)     as it is; must lie in [0, 1]
======================================  ===========================

Any other integer type is refused, as PIL's mode ``"I"`` (32-bit integers)
is: its range is not recorded (an ``int32`` image may hold 8-bit, 12-bit or
16-bit data), so a guess would give plausible but wrong features; the error
says how to convert. Other PIL modes (palette, RGBA, CMYK, ...) are converted
to RGB by PIL, alpha dropped; Pillow reads a 16-bit RGB(A) PNG at 8 bits per
channel (each value's top byte), so decode such a file with another library
into a uint16 array to keep its 16 bits. ``C`` is 1 (grey, repeated to the
backbone's channels later) or 3. Every error names the offending sample (and
file).
"""

from __future__ import annotations

import functools
import os

import numpy as np
import torch

from .lazy import LazySequence
from .meta import refuse_meta

__all__ = ["as_images", "check_pil_image", "decode_image", "image_scale", "pil_array"]

_CHANNELS = (1, 3)
# the largest value of each integer depth: its value divided by this lies in [0, 1]
_DEPTH_MAXIMA = {"uint8": 255, "uint16": 65535, "bool": 1}
# PIL modes whose arrays (np.asarray) are images as they are; any other mode but "I" is converted to RGB
_PIL_AS_ARRAYS = ("1", "L", "RGB", "I;16", "I;16L", "I;16B", "I;16N", "F")
_ACCEPTED = "images must be uint8 (0-255), uint16 (0-65535), bool or floats in [0, 1]"
_HOW_TO_SCALE = "x / 255 for 8-bit values, x / 65535 for 16-bit ones, x / 4095 for 12-bit ones"


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
        return LazySequence(list(X), functools.partial(_decode_sample, channels_last=True))
    raise TypeError(
        "X must be an (N, H, W, C) numpy array, an (N, C, H, W) torch tensor, or a list of "
        f"PIL images / file paths / arrays; got {type(X).__name__}."
    )


def decode_image(item, where: str, channels_last: bool = True) -> torch.Tensor:
    """One image as a ``(C, H, W)`` float32 tensor in [0, 1]; every error names ``where`` (``"sample 3"``).

    ``item`` is a file path, a PIL image, an array (``(H, W[, C])``, or
    ``(C, H, W)`` with ``channels_last=False``) or a ``(C, H, W)`` / ``(H, W)``
    tensor; its values are scaled by the depth of its type (module docstring).
    """
    if isinstance(item, (str, os.PathLike)):
        path = os.fspath(item)
        where = f"image file {path!r} ({where})"
        item = _open_image(path, where)
    if _is_pil(item):
        item = pil_array(item, where)
    if isinstance(item, torch.Tensor):
        refuse_meta(item, where)
        item = item.detach().cpu()
    elif not isinstance(item, np.ndarray):
        raise TypeError(f"{where} is a {type(item).__name__}; expected a PIL image, a file path, an array or a tensor.")
    scale = _check_values(item, where)
    tensor = item if isinstance(item, torch.Tensor) else _tensor_of(item, channels_last)
    _check_shape(tensor, where)
    tensor = tensor.to(torch.float32) if tensor.ndim == 3 else tensor.to(torch.float32).unsqueeze(0)
    return tensor if scale is None else tensor.div_(scale)


def image_scale(dtype, where: str) -> int | None:
    """The largest value of an integer image type (``v / scale`` lies in [0, 1]); None for floats.

    ``dtype`` is a numpy or torch dtype. Any other type is a ``TypeError``
    naming ``where``; for integer types other than uint8 and uint16, whose
    range the type does not record, it says how to convert.
    """
    name = str(dtype).removeprefix("torch.") if isinstance(dtype, torch.dtype) else np.dtype(dtype).name
    if name in _DEPTH_MAXIMA:
        return _DEPTH_MAXIMA[name]
    if name.startswith(("float", "bfloat")):
        return None
    if name.startswith(("int", "uint")):
        raise TypeError(
            f"{where} has dtype {name}, whose range the dtype does not record (8-bit, 12-bit, 16-bit or other "
            f"values); convert it to uint8 or uint16 if it holds 8- or 16-bit values (x.astype(np.uint16)), or to "
            f"floats in [0, 1]: {_HOW_TO_SCALE}."
        )
    raise TypeError(f"{where} has dtype {name}; {_ACCEPTED}.")


def check_pil_image(image, where: str) -> None:
    """Refuse a PIL image whose mode does not record its range: ``"I"`` (32-bit integers), but for a PNG's.

    Pillow before 10.3 opens 16-bit grey PNGs in mode ``"I"``; a PNG holds 16 bits
    at most, so those are read as uint16. The mode is in a file's header:
    this check needs no decoding.
    """
    if image.mode == "I" and image.format != "PNG":
        raise TypeError(
            f"{where} has mode 'I' (32-bit integers), whose range the mode does not record (8-bit, 12-bit, 16-bit "
            "or other values); convert it: Image.fromarray(np.asarray(image).astype(np.uint16)) if it holds 16-bit "
            f"values, or to floats in [0, 1], e.g. np.asarray(image) / 65535 ({_HOW_TO_SCALE})."
        )


def _decode_sample(item, index: int, channels_last: bool) -> torch.Tensor:
    return decode_image(item, f"sample {index}", channels_last)


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
    return LazySequence(X, functools.partial(_decode_sample, channels_last=not is_tensor))


def _check_values(values, where: str, per_sample: bool = False) -> int | None:
    """The scale of ``values``'s type (see :func:`image_scale`), after checking that floats are finite and in [0, 1]."""
    scale = image_scale(values.dtype, where)
    if scale is not None:
        return scale
    non_finite, outside = _bad_values(values)
    if non_finite.any():
        raise ValueError(f"{where} contains NaN or infinite values{_first_sample(non_finite, per_sample)}.")
    if outside.any():
        raise ValueError(
            f"{where} has float values outside [0, 1]{_first_sample(outside, per_sample)}; scale floats to [0, 1] "
            f"(normalisation is the backbone's job): {_HOW_TO_SCALE}; or pass uint8 / uint16 values as they are."
        )
    return None


def _bad_values(values) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the non-finite values and of the values outside [0, 1] (any float dtype, array or tensor)."""
    if isinstance(values, torch.Tensor):
        values = values.detach()
        return (~torch.isfinite(values)).cpu().numpy(), ((values < 0) | (values > 1)).cpu().numpy()
    return ~np.isfinite(values), (values < 0) | (values > 1)


def _first_sample(mask: np.ndarray, per_sample: bool) -> str:
    if not per_sample:
        return ""
    first = int(np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))[0])
    return f" (first at sample {first})"


def _tensor_of(array: np.ndarray, channels_last: bool) -> torch.Tensor:
    """A CPU tensor of ``array``'s values, channels first: native byte order, uint16 widened to int32
    (torch before 2.3 has no uint16; the scale was read from the array's own type)."""
    native = array.dtype.newbyteorder("=")
    array = np.ascontiguousarray(array, dtype=np.int32 if native == np.uint16 else native)
    tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
    return tensor.permute(2, 0, 1) if tensor.ndim == 3 and channels_last else tensor


def _check_shape(tensor: torch.Tensor, where: str) -> None:
    channels = tensor.shape[0] if tensor.ndim == 3 else 1
    if tensor.ndim not in (2, 3) or channels not in _CHANNELS:
        raise ValueError(
            f"{where} has shape {tuple(tensor.shape)}; expected (H, W), (H, W, C) for arrays "
            "or (C, H, W) for tensors, with C = 1 or 3."
        )
    if min(tensor.shape[-2:]) < 1:
        raise ValueError(f"{where} is empty (shape {tuple(tensor.shape)}).")


def pil_array(image, where: str) -> np.ndarray:
    """The values of a PIL image as an array of a type of known depth (uint8, uint16, bool or float32).

    Modes are read as the module docstring says; mode ``"I"`` is refused
    (see :func:`check_pil_image`), naming ``where``.
    """
    check_pil_image(image, where)
    if image.mode == "I":  # a PNG's: 16 bits at most
        return np.asarray(image).astype(np.uint16)
    return np.asarray(image if image.mode in _PIL_AS_ARRAYS else image.convert("RGB"))


def _is_pil(item) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow comes with torchvision
        return False
    return isinstance(item, Image.Image)


def _open_image(path: str, where: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            return pil_array(image, where)
    except FileNotFoundError as error:  # often not a path at all: texts given to an image backbone
        raise ValueError(
            f"cannot read {where}: no such file; an image backbone takes a str as an image file's path: texts need a "
            "text backbone (hf:..., sentence_transformers:..., open_clip with modality='text')."
        ) from error
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {where}: {error}") from error
