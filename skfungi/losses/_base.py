"""What every feature block after the embedding provides, and the random heads the losses share.

A *block* is one part of a FUNGI feature row after the embedding. A
:class:`FungiLoss` is a block whose features are the projected per-sample
gradient of a self-supervised loss; a no-gradient block (such as
:class:`~skfungi.losses.ViewAverage`) is a :class:`FeatureBlock` that only
embeds views. Both build their views the one way views are built
(:mod:`skfungi.views`) and are fitted with a :class:`LossContext`.

A loss's random heads are drawn from seeds (:func:`random_head`) and are
never trained, so a pickled loss keeps their seeds, not their values, and
draws them again when it is loaded: a fitted DINO head on a 1280-d
embedding would otherwise add 42 MB to a saved transformer.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from sklearn.base import BaseEstimator

from .._utils.device import tensors_to
from .._utils.seeding import derive_seed, generator
from ..views import loss_views

__all__ = ["FeatureBlock", "FungiLoss", "LossContext", "random_head"]


@dataclass
class LossContext:
    """What a block may use while it is fitted.

    Attributes
    ----------
    embedding_dim : int
        Width ``E`` of the backbone's embedding.
    seed : int
        The estimator's base seed; a block derives its own streams from it.
    backbone : Backbone
        The backbone adapter (its ``modality`` decides the views).
    dtype, device
        Heads are created with this dtype (float64 but on MPS) on the backbone's device.
    training_samples : sequence
        The training samples (decoded on access): opaque items for ``negative_bank``.
    negative_bank : callable
        ``negative_bank(loss, samples, n_views, latents) -> (N * n_views, L)``:
        ``latents(embeddings)`` of the embeddings ``(N, n_views, E)`` of
        ``n_views`` of ``loss``'s views of each of ``samples`` (items of
        ``training_samples``), encoded without gradient, rows sample-major;
        the engine reports the samples' progress, refuses non-finite
        embeddings and reads or stores the bank in the estimator's ``memory``.
    """

    embedding_dim: int
    seed: int
    backbone: object
    dtype: torch.dtype
    device: torch.device
    training_samples: Sequence
    negative_bank: Callable


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


class FeatureBlock(BaseEstimator):
    """Base class of the feature blocks after the embedding.

    A block is a small scikit-learn style object: its constructor only stores
    settings (so ``get_params`` / ``set_params`` and grid searches work), and
    :meth:`fit` gives it fitted attributes ending in ``_``. Its ``name`` is
    the prefix of its feature names. Its views are those of ``view_kind``
    (``"dino"``, ``"simclr"``; see :func:`skfungi.views.loss_views`) as its
    settings make them, unless it overrides :meth:`views`.
    """

    name = "block"
    view_kind: str | None = None
    uses_inference_view = False
    needs_gradient = True
    _parameter_constraints: ClassVar[dict] = {}

    def prepare_views(self, context: LossContext) -> FeatureBlock:
        """Check the settings and resolve what building views needs (no heads, no banks); returns self."""
        self._validate_params()
        return self

    def fit(self, context: LossContext) -> FeatureBlock:
        raise NotImplementedError

    def to(self, device: torch.device) -> FeatureBlock:
        """A copy whose fitted tensors (heads, negatives) live on ``device``."""
        moved = copy.copy(self)
        for name, value in vars(self).items():
            if name.endswith("_"):
                setattr(moved, name, tensors_to(value, device))
        return moved

    @property
    def view_source(self) -> FeatureBlock:
        """The block whose :meth:`views` give this block's views, seeded by its name: itself, or the loss
        whose views a no-gradient block averages."""
        return self

    def view_count(self, backbone) -> int:
        """Views per sample for this backbone."""
        raise NotImplementedError

    def views(self, sample, backbone, generator: torch.Generator, n_views: int | None = None) -> list:
        """Views of one canonical sample, as a list of groups of views that can be encoded together
        (``n_views``: that many, for the blocks whose views have a count)."""
        return loss_views(self.view_kind, self, sample, backbone, generator, n_views)


class FungiLoss(FeatureBlock):
    """Base class of the self-supervised losses: blocks whose features are a projected gradient.

    Subclasses define ``name``, their views (``view_kind``, or
    ``uses_inference_view`` for the inference view alone), their per-sample
    loss (:meth:`sample_losses`) and draw their random heads in :meth:`fit`
    with :meth:`_draw_head`. Their settings are checked by scikit-learn's
    ``_parameter_constraints`` when they are fitted.
    """

    name = "loss"

    def sample_losses(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``(S,)`` losses from ``(S, V, E)`` embeddings of each sample's views."""
        raise NotImplementedError

    def _draw_head(self, context: LossContext, attribute: str, out_features: int, role: str = "head") -> None:
        """Set ``attribute`` to a random head ``(weight, bias)`` of ``out_features`` outputs on the embedding,
        and remember how it was drawn (a pickle keeps that, never the values)."""
        seed = derive_seed(context.seed, "head", self.name, role)
        self.head_draws_ = {**getattr(self, "head_draws_", {}), attribute: (context.embedding_dim, out_features, seed)}
        setattr(self, attribute, random_head(context.embedding_dim, out_features, seed, context.dtype, context.device))

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: the default state is this object's own __dict__
        for attribute in getattr(self, "head_draws_", {}):
            weight, _ = state.pop(attribute)
            state.setdefault("head_places_", {})[attribute] = (weight.dtype, str(weight.device))
        return state

    def __setstate__(self, state):
        places = state.pop("head_places_", {})
        super().__setstate__(state)
        for attribute, (in_features, out_features, seed) in getattr(self, "head_draws_", {}).items():
            dtype, device = places[attribute]
            setattr(self, attribute, random_head(in_features, out_features, seed, dtype, _loadable(device)))


def _loadable(device: str) -> torch.device:
    """``device`` if this machine has it, else the CPU (a transformer fitted on a GPU loads anywhere)."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        return torch.device("cpu")
    return device
