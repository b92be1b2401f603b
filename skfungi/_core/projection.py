"""Seeded random projections of per-sample gradients.

Dense projections (:class:`RademacherProjection`, :class:`GaussianProjection`)
multiply the flattened ``d_out x (d_in + 1)`` gradient by a ``(k, D)`` random
matrix scaled by ``1/sqrt(k)``. The matrix is never stored: it is defined
tile by tile (each at most ``TILE_BYTES``, drawn from a generator seeded by
the base seed and the tile's index) and regenerated at every projection, so
the extra memory stays about ``TILE_BYTES`` whatever the layer, and the result
does not depend on the batch or the device.

:class:`KroneckerProjection` uses ``P = P_out (x) P_in``, so that
``P vec(g a^T) = vec((P_out g)(P_in a)^T)``: the gradient is never formed.

A projection is fitted by :class:`~skfungi.FungiTransformer` with the target
layer's gradient shape, the output width and a seed, and is then used in two
steps: :meth:`reduce` turns per-sample factors ``(g, a)`` into a compact
per-sample array, and :meth:`project` maps stacked reductions (of several
losses at once, which amortises the regeneration) to ``(n, k)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.base import BaseEstimator

from .seeding import derive_seed

__all__ = ["GaussianProjection", "KroneckerProjection", "RademacherProjection", "make_projection"]

TILE_BYTES = 16 * 2**20

# the 8 signs (+-1, most significant bit first, a set bit is -1) of every byte value
_BYTE_SIGNS = 1 - 2 * torch.from_numpy(np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1)).float()


class _DenseProjection(BaseEstimator):
    """Dense ``(k, D)`` random matrix, regenerated tile by tile from its seed."""

    def fit(self, gradient_shape: tuple[int, int], n_components: int, seed: int):
        self.gradient_shape_ = tuple(int(n) for n in gradient_shape)
        self.input_dim_ = math.prod(self.gradient_shape_)
        self.n_components_ = int(n_components)
        self.seed_ = derive_seed(seed, "projection", self._distribution)
        return self

    @property
    def tile_columns(self) -> int:
        """Columns per tile: a multiple of 64 keeping a float32 tile under ``TILE_BYTES``."""
        return max(64, TILE_BYTES // (4 * self.n_components_) // 64 * 64)

    def reduce(self, g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Per-sample flattened gradients ``(S, d_out * d_in)``, row-major."""
        return torch.bmm(g.transpose(1, 2), a).flatten(1)

    def project(self, gradients: torch.Tensor) -> torch.Tensor:
        """``(n, D)`` flattened gradients -> ``(n, k)``, accumulated in float64 on a CPU.

        A float32 matrix product on a CPU splits its long sums over threads
        in a way that depends on the thread count, so its last bits do too;
        float64 sums rounded to float32 afterwards do not show that.
        """
        if gradients.shape[-1] != self.input_dim_:
            raise ValueError(f"expected gradients of width {self.input_dim_}, got {gradients.shape[-1]}.")
        dtype = torch.float64 if gradients.device.type == "cpu" else gradients.dtype
        out = gradients.new_zeros(gradients.shape[0], self.n_components_, dtype=dtype)
        for start, stop, tile in self._tiles(gradients.device, dtype):
            out.addmm_(gradients[:, start:stop].to(dtype), tile.T)
        return out.mul_(1.0 / math.sqrt(self.n_components_))

    def matrix(self) -> torch.Tensor:
        """The whole ``(k, D)`` matrix, scaled (for tests and small layers only)."""
        tiles = [tile.clone() for _, _, tile in self._tiles(torch.device("cpu"), torch.float32)]
        return torch.cat(tiles, dim=1) / math.sqrt(self.n_components_)

    def _tiles(self, device, dtype):
        """``(start, stop, tile)`` over the columns, each drawn into one reused buffer."""
        width = self.tile_columns
        buffer = np.empty((self.n_components_, min(width, self.input_dim_)), dtype=np.float32)
        for index, start in enumerate(range(0, self.input_dim_, width)):
            stop = min(start + width, self.input_dim_)
            tile = (
                buffer if stop - start == buffer.shape[1] else np.empty((self.n_components_, stop - start), np.float32)
            )
            self._draw(_rng(self.seed_, index), tile)
            yield start, stop, torch.from_numpy(tile).to(device=device, dtype=dtype)


class RademacherProjection(_DenseProjection):
    """Dense random +-1 projection scaled by ``1/sqrt(k)`` (the paper's default).

    The matrix is drawn in tiles of at most 16 MiB, each from a generator
    seeded by the projection's seed and the tile's index, and regenerated at
    every :meth:`project`: it is never stored or pickled.
    """

    _distribution = "rademacher"

    @staticmethod
    def _draw(rng: np.random.Generator, out: np.ndarray) -> None:
        """Fill ``out`` with signs: bit ``i`` of the generator's bytes (most significant bit
        first) gives entry ``i``, ``-1`` for a set bit, each byte read as 8 signs at once."""
        count = out.size
        raw = torch.frombuffer(bytearray(rng.bytes(-(-count // 8))), dtype=torch.uint8).int()
        flat = torch.from_numpy(out.reshape(-1))
        if count % 8 == 0:
            torch.index_select(_BYTE_SIGNS, 0, raw, out=flat.view(-1, 8))
        else:
            flat.copy_(_BYTE_SIGNS[raw].flatten()[:count])


class GaussianProjection(_DenseProjection):
    """Dense standard-normal projection scaled by ``1/sqrt(k)``, regenerated in tiles like
    :class:`RademacherProjection`."""

    _distribution = "gaussian"

    @staticmethod
    def _draw(rng: np.random.Generator, out: np.ndarray) -> None:
        rng.standard_normal(dtype=np.float32, out=out)


class KroneckerProjection(BaseEstimator):
    """Structured projection ``P_out (x) P_in`` that never forms the gradient.

    ``k = k_out * k_in`` with ``k_out`` the largest divisor of ``k`` not above
    ``sqrt(k)``; both factors are Rademacher matrices scaled by
    ``1/sqrt(k_out)`` and ``1/sqrt(k_in)``, so ``P`` has entries ``+-1/sqrt(k)``
    like the dense default. Cost per sample: ``M (d_out k_out + d_in k_in)``
    for ``M`` gradient tokens, instead of ``d_out d_in (M + k)``.
    """

    def fit(self, gradient_shape: tuple[int, int], n_components: int, seed: int):
        self.gradient_shape_ = tuple(int(n) for n in gradient_shape)
        self.input_dim_ = math.prod(self.gradient_shape_)
        self.n_components_ = int(n_components)
        k_out = max(d for d in range(1, math.isqrt(self.n_components_) + 1) if self.n_components_ % d == 0)
        self.factor_shape_ = (k_out, self.n_components_ // k_out)
        self.seed_ = derive_seed(seed, "projection", "kronecker")
        factors = []
        for part, (k, d) in enumerate(zip(self.factor_shape_, self.gradient_shape_, strict=True)):
            factor = np.empty((k, d), dtype=np.float32)
            RademacherProjection._draw(_rng(self.seed_, part), factor)
            factors.append(torch.from_numpy(factor) / math.sqrt(k))
        self.out_factor_, self.in_factor_ = factors
        return self

    def reduce(self, g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        out_factor = self.out_factor_.to(device=g.device, dtype=g.dtype)
        in_factor = self.in_factor_.to(device=a.device, dtype=a.dtype)
        return torch.bmm((g @ out_factor.T).transpose(1, 2), a @ in_factor.T).flatten(1)

    def project(self, reduced: torch.Tensor) -> torch.Tensor:
        return reduced

    def matrix(self) -> torch.Tensor:
        """The equivalent dense ``(k, D)`` matrix (for tests and small layers only)."""
        return torch.kron(self.out_factor_, self.in_factor_)


def _rng(seed: int, part: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, part])))


PROJECTIONS = {
    "rademacher": RademacherProjection,
    "gaussian": GaussianProjection,
    "kronecker": KroneckerProjection,
}


def make_projection(projection):
    """A projection object from a name or an object with ``fit`` / ``reduce`` / ``project``."""
    if isinstance(projection, str):
        if projection.lower() not in PROJECTIONS:
            raise ValueError(f"unknown projection {projection!r}; use one of {sorted(PROJECTIONS)}.")
        return PROJECTIONS[projection.lower()]()
    if all(hasattr(projection, name) for name in ("fit", "reduce", "project")):
        return projection
    raise TypeError(
        "projection must be 'rademacher', 'gaussian', 'kronecker' or an object with "
        f"fit, reduce and project methods; got {type(projection).__name__}."
    )
