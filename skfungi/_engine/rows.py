"""Feature rows from a batch's blocks: each block L2-normalised, written in float32, and checked.

A sample whose row is not finite is refused by index (or, with
``on_non_finite="nan"``, given a row of NaN with a warning); the other rows
of its batch are never touched, since no block mixes two samples. A block
that is exactly zero before normalisation is legal but suspicious (a dead
embedding, or a gradient that does not reach the layer): it is named in a
warning with its likely cause.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .._utils.numerics import l2_normalize

__all__ = ["NonFiniteFeaturesError", "finite_rows", "listed", "write_rows"]


class NonFiniteFeaturesError(ValueError):
    """Some samples' features are NaN or infinite (the message names them)."""


def write_rows(
    out: np.ndarray, start: int, blocks: dict[str, torch.Tensor], names: list[str], gradient_blocks, on_non_finite: str
) -> None:
    """Normalise the ``(S, width)`` ``blocks`` (in the order of ``names``) into ``out[start:start + S]``,
    then refuse or blank the rows that are not finite and warn about zero blocks."""
    parts = [blocks[name] for name in names]
    rows = torch.cat([l2_normalize(block).to(device="cpu", dtype=torch.float32) for block in parts], 1)
    stop = start + len(rows)
    out[start:stop] = rows.detach().numpy()
    bad = _refuse_non_finite(out[start:stop], start, parts, names, on_non_finite)
    _warn_zero_blocks(start, parts, names, set(gradient_blocks), bad)


def _refuse_non_finite(rows: np.ndarray, start: int, parts, names, on_non_finite: str) -> np.ndarray:
    bad = ~np.isfinite(rows).all(axis=1)
    if bad.any():
        indices = (start + np.flatnonzero(bad)).tolist()
        which = sorted({name for name, block in zip(names, parts, strict=True) if not finite_rows(block).all()})
        message = (
            f"the {', '.join(which)} block(s) of sample(s) {listed(indices)} are not finite (NaN or infinite): "
            "the backbone or a loss overflowed or produced NaN for them (other samples are unaffected)"
        )
        if on_non_finite == "raise":
            raise NonFiniteFeaturesError(
                message + ". Pass on_non_finite='nan' to get NaN rows for them instead of this error."
            )
        warnings.warn(message + "; their rows are NaN.", RuntimeWarning, stacklevel=6)
        rows[bad] = np.nan
    return bad


def _warn_zero_blocks(start: int, parts, names, gradient_blocks: set[str], bad: np.ndarray) -> None:
    for name, block in zip(names, parts, strict=True):
        zero = ~(block != 0).any(dim=1).cpu().numpy() & ~bad
        if not zero.any():
            continue
        reason = (
            "the gradient of their loss at the target layer is zero (activations saturated between the "
            "layer and the loss, such as ReLU6 at 0 or 6, or a loss that does not reach the layer)"
            if name in gradient_blocks
            else "the backbone gives them a zero embedding"
        )
        indices = (start + np.flatnonzero(zero)).tolist()
        warnings.warn(
            f"the {name} block of sample(s) {listed(indices)} is exactly zero before normalisation: {reason}.",
            RuntimeWarning,
            stacklevel=6,
        )


def finite_rows(block: torch.Tensor) -> torch.Tensor:
    """Whether each row of a 2-D block is finite."""
    return torch.isfinite(block).all(dim=1)


def listed(indices: list[int], shown: int = 10) -> str:
    """``"3, 7, 9"``, or the first ``shown`` indices and how many more."""
    more = f" and {len(indices) - shown} more" if len(indices) > shown else ""
    return ", ".join(map(str, indices[:shown])) + more
