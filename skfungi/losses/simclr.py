"""SimCLR-style InfoNCE between a sample's patches and a fixed negative bank."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .._seeding import derive_seed
from ..views.image import patchify
from ._base import FungiLoss, LossContext

__all__ = ["SimCLRLoss"]

_TEMPERATURE_SCOPES = ("all", "positives")


class SimCLRLoss(FungiLoss):
    """InfoNCE over a sample's own views, against a bank of negatives fixed in ``fit``.

    Views are ``grid_size x grid_size`` overlapping patches of side
    ``patch_fraction`` of the (resized) image, each resized to the input size:
    at 224 px the paper's 49 patches of 112 px with stride 18. Latents are
    ``normalise(head(embedding))`` (the embedding itself is not normalised).

    For each positive view ``i`` of a sample with similarities ``s``::

        loss_i = -mean_{j != i} s_ij / tau + logsumexp_{k != i} s_ik / tau

    where ``k`` runs over the sample's other views and every negative; the
    sample's loss is the mean over ``i``. ``temperature_scope="all"`` is the
    paper's vision code (tau inside the logsumexp too); ``"positives"`` is the
    companion library's form (tau only on the positive term).

    Parameters
    ----------
    grid_size : int, default=7
    patch_fraction : float, default=0.5
    latent_dim : int, default=96
    temperature : float, default=0.07
    n_negatives : int, default=256
        Training samples whose views form the negative bank (all of them if
        fewer are given to ``fit``); chosen with the estimator's seed.
    temperature_scope : {"all", "positives"}, default="all"
    """

    name = "simclr"

    def __init__(
        self,
        grid_size: int = 7,
        patch_fraction: float = 0.5,
        latent_dim: int = 96,
        temperature: float = 0.07,
        n_negatives: int = 256,
        temperature_scope: str = "all",
    ):
        self.grid_size = grid_size
        self.patch_fraction = patch_fraction
        self.latent_dim = latent_dim
        self.temperature = temperature
        self.n_negatives = n_negatives
        self.temperature_scope = temperature_scope

    def fit(self, context: LossContext) -> SimCLRLoss:
        if self.temperature_scope not in _TEMPERATURE_SCOPES:
            raise ValueError(f"temperature_scope must be one of {_TEMPERATURE_SCOPES}, got {self.temperature_scope!r}.")
        if self.grid_size < 2:
            raise ValueError(f"grid_size must be at least 2 (a sample needs two positives), got {self.grid_size}.")
        if self.n_negatives < 0:
            raise ValueError(f"n_negatives must be non-negative, got {self.n_negatives}.")
        self.head_ = self._head(context, self.latent_dim)
        images = context.training_images
        rng = np.random.default_rng(derive_seed(context.seed, "negatives", self.name))
        chosen = np.sort(rng.choice(len(images), size=min(self.n_negatives, len(images)), replace=False))
        self.negative_indices_ = chosen
        if len(chosen):
            embeddings = context.encode(self, [images[int(index)] for index in chosen])  # (N, V, E)
            self.negatives_ = self._latents(embeddings).flatten(0, 1)
        else:
            self.negatives_ = self.head_[0].new_zeros(0, self.latent_dim)
        return self

    def n_views(self, backbone) -> int:
        return self.grid_size**2

    def views(self, image, backbone, generator):
        return [patchify(image, backbone.input_size, self.grid_size, self.patch_fraction)]

    def _latents(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.normalize(F.linear(embeddings, *self.head_), dim=-1)

    def sample_losses(self, embeddings: torch.Tensor) -> torch.Tensor:
        latents = self._latents(embeddings)  # (S, V, L)
        n_views = latents.shape[1]
        positives = latents @ latents.transpose(1, 2)  # (S, V, V)
        negatives = latents @ self.negatives_.T  # (S, V, N)
        off_diagonal = ~torch.eye(n_views, dtype=torch.bool, device=latents.device)
        positive_term = (positives * off_diagonal).sum(-1) / (n_views - 1) / self.temperature
        scale = 1.0 / self.temperature if self.temperature_scope == "all" else 1.0
        candidates = torch.cat([positives.masked_fill(~off_diagonal, float("-inf")), negatives], dim=-1)
        per_view = torch.logsumexp(candidates * scale, dim=-1) - positive_term
        return per_view.mean(dim=-1)
