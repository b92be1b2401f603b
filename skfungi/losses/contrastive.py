"""InfoNCE over one sample's own views: SimCLR's loss, and dense FUNGI's over an image's patch tokens.

Each view ``i`` of a sample has a latent ``z_i = normalise(W e_i + b)`` from
a random, never-trained head (:func:`head_latents`). With the similarities
``s_ij = z_i . z_j`` among the sample's ``V`` views and ``n_ik`` to its
negatives, view ``i``'s loss is::

    l_i = -1/(V - 1) sum_{j != i} s_ij / tau + logsumexp_{k != i} (c_ik * scale)

where ``c_i`` holds the similarities to the sample's other views and to its
negatives, and ``scale`` is ``1 / tau`` (``scope="all"``: the paper's vision
code, tau inside the log-sum-exp too) or 1 (``"positives"``: the companion
library's text and audio form, tau on the positive term only). A sample's
loss is the mean over its views; nothing mixes two samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._utils.numerics import l2_normalize

__all__ = ["TEMPERATURE_SCOPES", "head_latents", "info_nce"]

TEMPERATURE_SCOPES = ("all", "positives")


def head_latents(inputs: torch.Tensor, head: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``normalise(W x + b)`` along the last axis, for any leading shape."""
    return l2_normalize(F.linear(inputs, *head))


def info_nce(positives: torch.Tensor, negatives: torch.Tensor, temperature: float, scope: str = "all") -> torch.Tensor:
    """Per-view losses ``(..., V)`` from the similarities among a sample's views ``(..., V, V)`` and to its
    negatives ``(..., V, K)`` (see the module docstring)."""
    n_views = positives.shape[-1]
    off_diagonal = ~torch.eye(n_views, dtype=torch.bool, device=positives.device)
    positive_term = (positives * off_diagonal).sum(-1) / (n_views - 1) / temperature
    scale = 1.0 / temperature if scope == "all" else 1.0
    candidates = torch.cat([positives.masked_fill(~off_diagonal, float("-inf")), negatives], dim=-1)
    return torch.logsumexp(candidates * scale, dim=-1) - positive_term
