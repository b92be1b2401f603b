"""What every FUNGI loss provides, and the random heads they share."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from sklearn.base import BaseEstimator

from .._utils.device import tensors_to
from .._utils.seeding import derive_seed, generator

__all__ = ["FungiLoss", "LossContext", "random_head"]


@dataclass
class LossContext:
    """What a loss may use while it is fitted.

    Attributes
    ----------
    embedding_dim : int
        Width ``E`` of the backbone's embedding.
    seed : int
        The estimator's base seed; a loss derives its own streams from it.
    backbone : Backbone
        The backbone adapter (its ``modality`` decides the views).
    dtype, device
        Heads are created with this dtype (float64 but on MPS) on the backbone's device.
    training_images : sequence
        Training samples (decoded on access), for banks of negatives: opaque
        items to hand to ``encode``.
    encode : callable
        ``encode(loss, samples, n_views=None, stage="fit") -> (N, V, E)``:
        embeddings, without gradient, of each sample's views as ``loss``
        builds them (seeded per sample), for items of ``training_images``.
        With ``stage="fit"`` each sample is reported to the progress bars and
        a sample whose embeddings are not finite is an error; ``stage=None``
        does neither (to encode a sample again).
    precision, batch_size
        How ``encode`` runs: the autocast dtype of the backbone's forwards and
        the most views in one forward (both part of a stored bank's key).
    bank_cache : Path or None
        The folder of stored negative banks (the estimator's ``memory``), or
        None for no disk cache.
    """

    embedding_dim: int
    seed: int
    backbone: object
    dtype: torch.dtype
    device: torch.device
    training_images: object
    encode: object
    precision: str = "float32"
    batch_size: int = 32
    bank_cache: Path | None = None


def random_head(
    in_features: int, out_features: int, seed: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of a never-trained ``nn.Linear``, drawn as torch initialises one.

    Uniform in ``+-1/sqrt(in_features)`` (PyTorch's default for ``nn.Linear``),
    drawn on the CPU from ``seed`` so that every device gets the same head.
    """
    bound = 1.0 / math.sqrt(in_features)
    rng = generator(seed)
    weight = torch.rand(out_features, in_features, generator=rng, dtype=torch.float64) * 2 - 1
    bias = torch.rand(out_features, generator=rng, dtype=torch.float64) * 2 - 1
    return (weight * bound).to(device=device, dtype=dtype), (bias * bound).to(device=device, dtype=dtype)


class FungiLoss(BaseEstimator):
    """Base class of the self-supervised losses.

    A loss is a small scikit-learn style object: its constructor only stores
    settings (so ``get_params`` / ``set_params`` and grid searches work), and
    :meth:`fit` returns a fitted copy's state in attributes ending in ``_``.

    Subclasses define ``name`` (the prefix of its feature names), whether it
    reuses the backbone's inference view (``uses_inference_view``), how to
    build a sample's views (:meth:`views`), and its per-sample loss
    (:meth:`sample_losses`). Their settings are checked by scikit-learn's
    ``_parameter_constraints`` when they are fitted.
    """

    name = "loss"
    uses_inference_view = False
    needs_gradient = True  # False for blocks that only embed views (ViewAverage)
    _parameter_constraints: ClassVar[dict] = {}

    def prepare_views(self, context: LossContext) -> FungiLoss:
        """Check the settings and resolve what building views needs (no heads, no banks); returns self."""
        self._validate_params()
        return self

    def fit(self, context: LossContext) -> FungiLoss:
        raise NotImplementedError

    def to(self, device: torch.device) -> FungiLoss:
        """A copy whose fitted tensors (heads, negatives) live on ``device``."""
        moved = copy.copy(self)
        for name, value in vars(self).items():
            if name.endswith("_"):
                setattr(moved, name, tensors_to(value, device))
        return moved

    def view_count(self, backbone) -> int:
        """Views per sample for this backbone."""
        raise NotImplementedError

    def views(self, sample, backbone, generator: torch.Generator) -> list:
        """Views of one canonical sample, as a list of groups of views that can be encoded together."""
        raise NotImplementedError

    def sample_losses(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``(S,)`` losses from ``(S, V, E)`` embeddings of each sample's views."""
        raise NotImplementedError

    def _head(self, context: LossContext, out_features: int, role: str = "head"):
        seed = derive_seed(context.seed, "head", self.name, role)
        return random_head(context.embedding_dim, out_features, seed, context.dtype, context.device)
