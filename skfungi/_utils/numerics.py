"""L2 normalisation that neither overflows nor underflows.

``F.normalize(x)`` divides by ``sqrt(sum x_i^2)``: the squares overflow for
entries above about ``1e154`` in float64 (``1e19`` in float32), and the row
silently becomes zero. Dividing by the largest magnitude first makes the
largest entry 1, so the sum of squares lies in ``[1, n]``; as
``x / ||x|| = (x / c) / ||x / c||`` for any ``c > 0``, the result is the
same direction, exactly. The scale is detached: a constant ``c`` leaves the
derivative unchanged, since normalisation is homogeneous of degree 0.
Non-finite entries give non-finite rows (never zeros), and zero rows stay
zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["l2_normalize"]


def l2_normalize(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``x / ||x||`` along ``dim``, exact for any finite magnitude.

    Examples
    --------
    >>> import torch
    >>> from skfungi._utils.numerics import l2_normalize
    >>> l2_normalize(torch.tensor([[3e200, 4e200], [0.0, 0.0]], dtype=torch.float64))
    tensor([[0.6000, 0.8000],
            [0.0000, 0.0000]], dtype=torch.float64)
    """
    scale = x.detach().abs().amax(dim=dim, keepdim=True)
    return F.normalize(x / torch.where(scale > 0, scale, torch.ones_like(scale)), dim=dim)
