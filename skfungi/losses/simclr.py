"""SimCLR-style InfoNCE between a sample's views and a fixed negative bank."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from .._utils.seeding import derive_seed
from .._utils.sklearn_compat import StrOptions
from .._utils.validation import int_range, real_range
from ._base import FungiLoss, LossContext
from .contrastive import TEMPERATURE_SCOPES, head_latents, info_nce

__all__ = ["SimCLRLoss"]

# The paper's settings per modality; "all" negative views = every positive view.
MODALITY_DEFAULTS = {
    "image": {"latent_dim": 96, "n_negatives": 256, "negative_views": "all"},
    "text": {"latent_dim": 256, "n_views": 12, "n_negatives": 256, "negative_views": 2},
    "audio": {"latent_dim": 768, "n_views": 16, "n_negatives": 64, "negative_views": 2},
    "tabular": {"latent_dim": 128, "n_views": 16, "n_negatives": 256, "negative_views": 2},
}


class SimCLRLoss(FungiLoss):
    """InfoNCE over a sample's own views, against a bank of negatives fixed in ``fit``.

    Views depend on the backbone's modality:

    - image: ``grid_size x grid_size`` overlapping patches of side
      ``patch_fraction`` of the resized image, each resized to the input size
      (at 224 px the paper's 49 patches of 112 px, stride 18; deterministic)
      or, with ``resize_patches=False``, forwarded at their own side;
    - text: ``n_views`` copies with each word dropped with ``drop_prob``;
    - audio: ``n_views`` copies of the feature frames plus uniform noise
      scaled by ``r * noise_scale`` (``r ~ U(0, 1)``), rolled by up to
      ``max_roll`` frames;
    - tabular: ``n_views`` copies with each feature zeroed with ``drop_prob``
      and Gaussian noise of ``noise_scale`` times the feature's spread.

    Latents are ``normalise(head(embedding))`` (the embedding itself is not
    normalised). For each positive view ``i`` of a sample with similarities ``s``::

        loss_i = -mean_{j != i} s_ij / tau + logsumexp_{k != i} s_ik / tau

    where ``k`` runs over the sample's other views and every negative; the
    sample's loss is the mean over ``i``. ``temperature_scope="all"`` is the
    paper's vision code (tau inside the logsumexp too); ``"positives"`` is the
    companion library's text and audio form (tau only on the positive term).

    Parameters
    ----------
    grid_size : int, default=7
        Image patches per side.
    patch_fraction : float, default=0.5
        Image patch side as a fraction of the input size.
    resize_patches : bool, default=True
        Resize each image patch to the input size before the forward (the
        paper). ``False`` forwards it at its own side (112 px at 224; about a
        quarter of the cost), adjusted to what the backbone can forward (see
        :meth:`~skfungi.backbones.ImageBackbone.forward_size`; see
        ``skfungi.views.image.simclr_patch_size``); ``views="fast"``
        uses ``False`` with ``grid_size=4``.
    n_views : int or "auto", default="auto"
        Positive views per sample for text / audio / tabular ("auto": 12 for
        text, 16 for audio and tabular). Images use ``grid_size ** 2``.
    drop_prob : float, default=0.1
        Word deletion (text) or feature dropout (tabular) probability.
    noise_scale : float, default=0.1
        Noise strength for audio and tabular views.
    max_roll : int, default=10
        Largest time roll of audio views, in frames.
    latent_dim : int or "auto", default="auto"
        Head width ("auto": 96 image, 256 text, 768 audio, 128 tabular).
    temperature : float, default=0.07
    n_negatives : int or "auto", default="auto"
        Training samples whose views form the negative bank ("auto": 256, or
        64 for audio; all of them if fewer are given to ``fit``), chosen with
        the estimator's seed.
    negative_views : int, "all" or "auto", default="auto"
        Views per negative sample ("auto": all patches for images, 2 otherwise).
    temperature_scope : {"all", "positives"}, default="all"

    Attributes
    ----------
    head_ : tuple of tensors
        The random head's weight and bias.
    negatives_ : tensor of shape (n_negative_views, latent_dim)
        Latents of the negative bank.
    negative_indices_ : ndarray
        Indices of the training samples in the bank.
    """

    name = "simclr"
    view_kind = "simclr"
    _parameter_constraints: ClassVar[dict] = {
        "grid_size": [int_range(2)],
        "patch_fraction": [real_range(0, 1, "right")],
        "resize_patches": ["boolean"],
        "n_views": [StrOptions({"auto"}), int_range(2)],
        "drop_prob": [real_range(0, 1, "left")],
        "noise_scale": [real_range(0, None, "left")],
        "max_roll": [int_range(0)],
        "latent_dim": [StrOptions({"auto"}), int_range(2)],
        "temperature": [real_range(0, None, "neither")],
        "n_negatives": [StrOptions({"auto"}), int_range(0)],
        "negative_views": [StrOptions({"auto", "all"}), int_range(1)],
        "temperature_scope": [StrOptions(set(TEMPERATURE_SCOPES))],
    }

    def __init__(
        self,
        grid_size: int = 7,
        patch_fraction: float = 0.5,
        resize_patches: bool = True,
        n_views="auto",
        drop_prob: float = 0.1,
        noise_scale: float = 0.1,
        max_roll: int = 10,
        latent_dim="auto",
        temperature: float = 0.07,
        n_negatives="auto",
        negative_views="auto",
        temperature_scope: str = "all",
    ):
        self.grid_size = grid_size
        self.patch_fraction = patch_fraction
        self.resize_patches = resize_patches
        self.n_views = n_views
        self.drop_prob = drop_prob
        self.noise_scale = noise_scale
        self.max_roll = max_roll
        self.latent_dim = latent_dim
        self.temperature = temperature
        self.n_negatives = n_negatives
        self.negative_views = negative_views
        self.temperature_scope = temperature_scope

    def prepare_views(self, context: LossContext) -> SimCLRLoss:
        """Check the settings and resolve the modality's defaults (views, latent width, bank size)."""
        super().prepare_views(context)
        modality = context.backbone.modality
        if modality not in MODALITY_DEFAULTS:
            raise ValueError(f"SimCLRLoss has no views for modality {modality!r}.")
        self._resolve(modality)
        return self

    def fit(self, context: LossContext) -> SimCLRLoss:
        self.prepare_views(context)
        self._draw_head(context, "head_", self.latent_dim_)
        samples = context.training_samples
        rng = np.random.default_rng(derive_seed(context.seed, "negatives", self.name))
        chosen = np.sort(rng.choice(len(samples), size=min(self.n_negatives_, len(samples)), replace=False))
        self.negative_indices_ = chosen
        if len(chosen):
            bank = [samples[int(index)] for index in chosen]
            self.negatives_ = context.negative_bank(self, bank, self.negative_views_, self._latents)
        else:
            self.negatives_ = self.head_[0].new_zeros(0, self.latent_dim_)
        return self

    def _resolve(self, modality: str) -> None:
        defaults = MODALITY_DEFAULTS[modality]
        self.modality_ = modality
        if modality == "image":
            self.n_views_ = self.grid_size**2
        else:
            self.n_views_ = defaults["n_views"] if self.n_views == "auto" else int(self.n_views)
        self.latent_dim_ = defaults["latent_dim"] if self.latent_dim == "auto" else int(self.latent_dim)
        self.n_negatives_ = defaults["n_negatives"] if self.n_negatives == "auto" else int(self.n_negatives)
        negative_views = defaults["negative_views"] if self.negative_views == "auto" else self.negative_views
        self.negative_views_ = self.n_views_ if negative_views == "all" else int(negative_views)

    def view_count(self, backbone) -> int:
        return self.n_views_

    def views(self, sample, backbone, generator, n_views: int | None = None):
        """``n_views`` (default ``n_views_``) positive views of one sample (see :mod:`skfungi.views`)."""
        return super().views(sample, backbone, generator, self.n_views_ if n_views is None else n_views)

    def _latents(self, embeddings: torch.Tensor) -> torch.Tensor:
        return head_latents(embeddings, self.head_)

    def sample_losses(self, embeddings: torch.Tensor) -> torch.Tensor:
        latents = self._latents(embeddings)  # (S, V, L)
        positives = latents @ latents.transpose(1, 2)  # (S, V, V)
        negatives = latents @ self.negatives_.T  # (S, V, N)
        return info_nce(positives, negatives, self.temperature, self.temperature_scope).mean(dim=-1)
