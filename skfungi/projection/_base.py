"""What every projection shares: its fit arguments, its seeded generators, and the flattened-gradient form."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from .._utils.seeding import derive_seed

__all__ = ["FlatGradientProjection", "check_fitted", "checked_fit_arguments", "rng"]


class FlatGradientProjection(BaseEstimator):
    """A ``(k, D)`` projection of the formed gradient, flattened row-major."""

    def fit(self, gradient_shape: tuple[int, int], n_components: int, seed: int):
        self.gradient_shape_, self.n_components_ = checked_fit_arguments(gradient_shape, n_components, seed)
        self.input_dim_ = math.prod(self.gradient_shape_)
        self.seed_ = derive_seed(seed, "projection", self._seed_name)
        return self

    def reduce(self, g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Per-sample flattened gradients ``(S, d_out * d_in)``, row-major."""
        return torch.bmm(g.transpose(1, 2), a).flatten(1)

    def _check_width(self, gradients: torch.Tensor) -> None:
        check_fitted(self)
        if gradients.shape[-1] != self.input_dim_:
            raise ValueError(f"expected gradients of width {self.input_dim_}, got {gradients.shape[-1]}.")


def check_fitted(projection) -> None:
    check_is_fitted(
        projection,
        "seed_",
        msg="This %(name)s is not fitted yet: FungiTransformer fits it in its own fit, or call "
        "fit(gradient_shape, n_components, seed) before using it.",
    )


def checked_fit_arguments(gradient_shape, n_components, seed) -> tuple[tuple[int, int], int]:
    """``(gradient_shape, n_components)`` as ints, or a ``ValueError`` naming the argument."""

    def is_count(value) -> bool:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1

    shape = tuple(gradient_shape) if isinstance(gradient_shape, tuple | list) else ()
    if len(shape) != 2 or not all(is_count(n) for n in shape):
        raise ValueError(
            f"gradient_shape must be a pair of positive ints (d_out, d_in + bias), got {gradient_shape!r}."
        )
    if not is_count(n_components):
        raise ValueError(f"n_components must be a positive int (the projection's width), got {n_components!r}.")
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
    return (int(shape[0]), int(shape[1])), int(n_components)


def rng(seed: int, part: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, part])))
