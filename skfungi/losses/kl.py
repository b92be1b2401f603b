"""KL divergence to the uniform distribution (FUNGI's KL loss)."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F

from .._utils.numerics import l2_normalize
from .._utils.validation import int_range, real_range
from ..views import inference_views
from ._base import FungiLoss, LossContext

__all__ = ["KLLoss"]


class KLLoss(FungiLoss):
    """KL divergence between softmax(head(normalised embedding) / T) and uniform.

    It uses the backbone's own inference view, so with ``include_embedding``
    the embedding and this loss share one forward pass.

    Parameters
    ----------
    temperature : float, default=15
        Softmax temperature T (the paper's runs use 15).
    latent_dim : int, default=768
        Width of the random head.

    Examples
    --------
    >>> from skfungi.losses import KLLoss
    >>> KLLoss(temperature=1.0)  # the companion library's default
    KLLoss(temperature=1.0)
    """

    name = "kl"
    uses_inference_view = True
    _parameter_constraints: ClassVar[dict] = {
        "temperature": [real_range(0, None, "neither")],
        "latent_dim": [int_range(2)],
    }

    def __init__(self, temperature: float = 15.0, latent_dim: int = 768):
        self.temperature = temperature
        self.latent_dim = latent_dim

    def fit(self, context: LossContext) -> KLLoss:
        self.prepare_views(context)
        self._draw_head(context, "head_", self.latent_dim)
        return self

    def view_count(self, backbone) -> int:
        return 1

    def views(self, sample, backbone, generator, n_views=None):
        """The inference view alone (the embedding's own forward serves both)."""
        return inference_views(sample, backbone)

    def sample_losses(self, embeddings: torch.Tensor) -> torch.Tensor:
        weight, bias = self.head_
        logits = F.linear(l2_normalize(embeddings[:, 0]), weight, bias) / self.temperature
        log_probs = F.log_softmax(logits, dim=-1)
        # KL(uniform || p) = sum_j u (log u - log p_j), u = 1 / K
        return -math.log(self.latent_dim) - log_probs.mean(dim=-1)
