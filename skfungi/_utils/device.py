"""Where the backbone runs and at which precision its forward passes are computed.

``device="auto"`` keeps a module that already lives on an accelerator where it
is, and otherwise takes CUDA, then MPS, then the CPU. A module that must move
is copied to the device, so the user's module is never moved in place.

``precision`` selects the dtype of the backbone's forward passes through
``torch.autocast``; the losses, the per-sample gradient factors and the
projections are computed in float32 or wider whatever the precision.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext

import torch
import torch.nn as nn

__all__ = [
    "PRECISIONS",
    "autocast",
    "check_precision",
    "loss_dtype",
    "module_device",
    "module_on",
    "resolve_device",
    "tensors_to",
]

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def module_device(module: nn.Module | None) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a module without any)."""
    if module is None:
        return torch.device("cpu")
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def resolve_device(device, module: nn.Module | None = None) -> torch.device:
    """The ``torch.device`` that ``device`` names; ``"auto"`` prefers the module's accelerator, CUDA, MPS, CPU."""
    if isinstance(device, str) and device == "auto":
        current = module_device(module)
        if current.type not in ("cpu", "meta"):
            return current
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be 'auto', a device string such as 'cpu', 'cuda', 'cuda:1' or 'mps', or a "
            f"torch.device; got {device!r}."
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for, but CUDA is not available on this machine.")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA device(s).")
    if resolved.type == "mps" and not _mps_available():
        raise ValueError(f"device={device!r} was asked for, but MPS is not available on this machine.")
    return resolved


def check_precision(precision) -> torch.dtype:
    """The autocast dtype of a ``precision`` name."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}.")
    return PRECISIONS[precision]


def autocast(precision: str, device: torch.device):
    """Autocast context for the backbone's forward at ``precision`` (none for float32)."""
    dtype = check_precision(precision)
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def module_on(module: nn.Module | None, device: torch.device, memo: dict | None = None) -> nn.Module | None:
    """``module`` itself when all its tensors are on ``device``, else a copy moved there.

    ``memo`` (id of module -> copy) keeps one copy per module when several
    objects share it.
    """
    if module is None:
        return None
    tensors = (*module.parameters(), *module.buffers())
    if all(_same_device(tensor.device, device) for tensor in tensors):
        return module
    memo = {} if memo is None else memo
    if id(module) not in memo:
        memo[id(module)] = copy.deepcopy(module).to(device)
    return memo[id(module)]


def tensors_to(value, device: torch.device):
    """``value`` with every tensor inside tuples, lists and dicts moved to ``device`` (others unchanged)."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(tensors_to(item, device) for item in value)
    if isinstance(value, list):
        return [tensors_to(item, device) for item in value]
    if isinstance(value, dict):
        return {key: tensors_to(item, device) for key, item in value.items()}
    return value


def _same_device(actual: torch.device, wanted: torch.device) -> bool:
    if actual.type != wanted.type:
        return False
    if wanted.type == "cuda":
        wanted_index = wanted.index if wanted.index is not None else torch.cuda.current_device()
        return actual.index == wanted_index
    return True


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return backend is not None and backend.is_available()


def loss_dtype(device: torch.device) -> torch.dtype:
    """Losses and heads run in float64 (except where a device has none): the KL gradient,
    softmax minus uniform over T, loses about four digits to cancellation in float32, which
    would let rounding in the backbone's batched matmuls show in a sample's features."""
    return torch.float32 if device.type == "mps" else torch.float64
