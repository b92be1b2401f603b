"""Validate audio inputs: a collection of mono waveforms, each at a known sample rate.

Accepted forms:

- a list or tuple (or a 1-D object array) whose elements are 1-D float
  waveforms (``numpy.ndarray`` or ``torch.Tensor``), all at the adapter's
  ``sample_rate``;
- elements may instead be ``(waveform, sample_rate)`` pairs, to give a clip
  its own rate (clips at different rates may be mixed).

Waveforms must be non-empty, 1-D (mono), floating point and finite; they are
handed to the features function as float32 tensors. Integer PCM is refused
rather than rescaled: its scale depends on the bit depth, which an array does
not record (the error says how to convert). A 2-D array is refused too: it
would be ambiguous between clips of equal length and tabular rows. Every
error names the offending sample.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .._utils.validation import whole_range
from .lazy import LazySequence
from .meta import refuse_meta

__all__ = ["Waveform", "as_waveforms", "check_sample_rate"]


class Waveform(NamedTuple):
    """One mono clip: a 1-D float32 CPU tensor and its sample rate in Hz."""

    samples: torch.Tensor
    sample_rate: int


def check_sample_rate(value, where: str = "sample_rate") -> int:
    """``value`` as a positive int: given as an int, a numpy integer or a whole float (``8000.0``, as some
    audio readers give it). Anything else (``8000.5``, NaN, a bool, a string) is an error naming ``where``."""
    if not whole_range(1).is_satisfied_by(value):
        raise ValueError(
            f"{where} must be a positive whole number of Hz (an int, or a float such as 8000.0), got {value!r}."
        )
    return int(value)


def _as_waveform(item: tuple[object, int], index: int) -> Waveform:
    waveform, rate = item
    if isinstance(waveform, torch.Tensor):
        tensor = waveform.detach().cpu()
    else:
        array = np.ascontiguousarray(waveform)
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
    return Waveform(tensor.to(torch.float32), rate)


def as_waveforms(X, sample_rate: int) -> LazySequence:
    """Check that ``X`` is a collection of mono float waveforms; plain ones are at ``sample_rate`` Hz."""
    sample_rate = check_sample_rate(sample_rate)
    if isinstance(X, np.ndarray) and X.dtype == object and X.ndim == 1:
        X = list(X)
    if isinstance(X, (np.ndarray, torch.Tensor)):
        raise ValueError(_array_message(X))
    if isinstance(X, (str, bytes)):
        raise TypeError("X must be a list of 1-D waveforms, not a string (file paths are not read: load the audio).")
    if not isinstance(X, (list, tuple)):
        raise TypeError(
            f"X must be a list of 1-D float waveforms (numpy arrays or torch tensors); got {type(X).__name__}."
        )
    if len(X) == 0:
        raise ValueError("X is empty: at least one waveform is required.")
    return LazySequence([_checked(item, index, sample_rate) for index, item in enumerate(X)], _as_waveform)


def _array_message(X) -> str:
    shape = tuple(X.shape)
    kind = type(X).__name__
    if X.ndim == 1:
        return f"X is a single 1-D {kind} of shape {shape}; pass a list of waveforms, e.g. [waveform]."
    if X.ndim == 2:
        return (
            f"X is a 2-D {kind} of shape {shape}; an audio backbone takes a list of 1-D waveforms. "
            "If its rows are clips of equal length, pass list(X)."
        )
    return (
        f"X is a {X.ndim}-D {kind} of shape {shape}, which looks like images; this transformer has an "
        "audio backbone and takes a list of 1-D waveforms."
    )


def _checked(item, index: int, default_rate: int) -> tuple[object, int]:
    rate = default_rate
    if isinstance(item, tuple):
        if len(item) != 2:
            raise ValueError(f"sample {index} is a tuple of {len(item)} items; expected (waveform, sample_rate).")
        item, rate = item
        rate = check_sample_rate(rate, f"the sample rate of sample {index}")
    if not isinstance(item, (np.ndarray, torch.Tensor)):
        raise TypeError(
            f"sample {index} is a {type(item).__name__}; expected a 1-D waveform (numpy array or torch tensor)."
        )
    refuse_meta(item, f"sample {index}")
    if item.ndim != 1:
        multichannel = item.ndim == 2 and min(item.shape) <= 8 and max(item.shape) > 64
        hint = " (multichannel audio: mix it down to mono first)" if multichannel else ""
        raise ValueError(f"sample {index} has shape {tuple(item.shape)}; a waveform must be 1-D{hint}.")
    if item.shape[0] == 0:
        raise ValueError(f"sample {index} is an empty waveform (length 0).")
    _check_dtype(item, index)
    values = item.detach().cpu().numpy() if isinstance(item, torch.Tensor) else item
    finite = np.isfinite(values)
    if not finite.all():
        first = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"sample {index} contains NaN or infinite values (first at position {first}).")
    return item, rate


def _check_dtype(item, index: int) -> None:
    if isinstance(item, torch.Tensor):
        if item.is_floating_point():
            return
        dtype, name = item.dtype, str(item.dtype).removeprefix("torch.")
    else:
        if item.dtype.kind == "f":
            return
        dtype, name = item.dtype, item.dtype.name
    if name in ("int16", "int32", "int8", "uint8"):
        as_float = "wav.float()" if isinstance(item, torch.Tensor) else "wav.astype(np.float32)"
        bits = {"int8": 7, "int16": 15, "int32": 31}.get(name)
        how = f"{as_float} / {2**bits}" if bits else f"({as_float} - 128) / 128"
        raise TypeError(
            f"sample {index} has integer dtype {name}; integer PCM is not rescaled implicitly. "
            f"Convert it to float in [-1, 1], e.g. {how}."
        )
    raise TypeError(f"sample {index} has dtype {dtype}; a waveform must be floating point.")
