"""The Kronecker projection ``P_out (x) P_in``: the cheapest, and the least accurate (see the class)."""

from __future__ import annotations

import math

import torch
from sklearn.base import BaseEstimator

from .._utils.seeding import derive_seed
from ._base import check_fitted, checked_fit_arguments, rng
from .dense import RademacherProjection

__all__ = ["KroneckerProjection"]


class KroneckerProjection(BaseEstimator):
    """Structured projection ``P_out (x) P_in`` that never forms the gradient.

    ``k = k_out * k_in`` with ``k_out`` the largest divisor of ``k`` not above
    ``sqrt(k)``; both factors are Rademacher matrices scaled by
    ``1/sqrt(k_out)`` and ``1/sqrt(k_in)``, so ``P`` has entries ``+-1/sqrt(k)``
    like the dense projection. Cost per sample: ``M (d_out k_out + d_in k_in)``
    for ``M`` gradient tokens, instead of ``d_out d_in (M + k)``.
    """

    def fit(self, gradient_shape: tuple[int, int], n_components: int, seed: int):
        self.gradient_shape_, self.n_components_ = checked_fit_arguments(gradient_shape, n_components, seed)
        self.input_dim_ = math.prod(self.gradient_shape_)
        k_out = max(d for d in range(1, math.isqrt(self.n_components_) + 1) if self.n_components_ % d == 0)
        self.factor_shape_ = (k_out, self.n_components_ // k_out)
        self.seed_ = derive_seed(seed, "projection", "kronecker")
        factors = []
        for part, (k, d) in enumerate(zip(self.factor_shape_, self.gradient_shape_, strict=True)):
            factor = torch.empty(k, d)
            RademacherProjection._draw(rng(self.seed_, part), factor)
            factors.append(factor / math.sqrt(k))
        self.out_factor_, self.in_factor_ = factors
        return self

    def reduce(self, g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        check_fitted(self)
        out_factor = self.out_factor_.to(device=g.device, dtype=g.dtype)
        in_factor = self.in_factor_.to(device=a.device, dtype=a.dtype)
        return torch.bmm((g @ out_factor.T).transpose(1, 2), a @ in_factor.T).flatten(1)

    def project(self, reduced: torch.Tensor) -> torch.Tensor:
        return reduced

    def matrix(self) -> torch.Tensor:
        """The equivalent dense ``(k, D)`` matrix (for tests and small layers only)."""
        check_fitted(self)
        return torch.kron(self.out_factor_, self.in_factor_)
