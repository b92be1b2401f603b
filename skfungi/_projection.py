"""Seeded random projections of per-sample gradients.

Dense projections (:class:`RademacherProjection`, :class:`GaussianProjection`)
multiply the flattened ``d_out x (d_in + 1)`` gradient by a ``(k, D)`` random
matrix scaled by ``1/sqrt(k)``. The matrix is never stored: it is defined
tile by tile (``TILE_COLUMNS`` columns each, drawn from a generator seeded by
the base seed and the tile's index) and regenerated block by block, so the
extra memory stays under ``block_bytes`` and the result does not depend on
the block size, the batch or the device.

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

from ._seeding import derive_seed

__all__ = ["GaussianProjection", "KroneckerProjection", "RademacherProjection", "make_projection"]

TILE_COLUMNS = 4096


class _DenseProjection(BaseEstimator):
    """Dense ``(k, D)`` random matrix, regenerated in blocks from its seed."""

    def __init__(self, block_bytes: int = 32 * 2**20):
        self.block_bytes = block_bytes

    def fit(self, gradient_shape: tuple[int, int], n_components: int, seed: int):
        self.gradient_shape_ = tuple(int(n) for n in gradient_shape)
        self.input_dim_ = math.prod(self.gradient_shape_)
        self.n_components_ = int(n_components)
        self.seed_ = derive_seed(seed, "projection", self._distribution)
        return self

    def reduce(self, g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Per-sample flattened gradients ``(S, d_out * d_in)``, row-major."""
        return torch.bmm(g.transpose(1, 2), a).flatten(1)

    def project(self, gradients: torch.Tensor) -> torch.Tensor:
        """``(n, D)`` flattened gradients -> ``(n, k)``."""
        if gradients.shape[-1] != self.input_dim_:
            raise ValueError(f"expected gradients of width {self.input_dim_}, got {gradients.shape[-1]}.")
        out = gradients.new_zeros(gradients.shape[0], self.n_components_)
        for start, stop, block in self._blocks(gradients.device, gradients.dtype):
            out.addmm_(gradients[:, start:stop], block.T)
        return out.mul_(1.0 / math.sqrt(self.n_components_))

    def matrix(self) -> torch.Tensor:
        """The whole ``(k, D)`` matrix, scaled (for tests and small layers only)."""
        blocks = [block.clone() for _, _, block in self._blocks(torch.device("cpu"), torch.float32)]
        return torch.cat(blocks, dim=1) / math.sqrt(self.n_components_)

    def _blocks(self, device, dtype):
        """``(start, stop, block)`` over the columns; one reused buffer bounds the memory."""
        tiles_per_block = max(1, self.block_bytes // (4 * self.n_components_ * TILE_COLUMNS))
        n_tiles = -(-self.input_dim_ // TILE_COLUMNS)
        buffer = np.empty((self.n_components_, min(n_tiles, tiles_per_block) * TILE_COLUMNS), dtype=np.float32)
        for first in range(0, n_tiles, tiles_per_block):
            start = first * TILE_COLUMNS
            stop = min(self.input_dim_, start + tiles_per_block * TILE_COLUMNS)
            for index in range(first, min(n_tiles, first + tiles_per_block)):
                column = (index - first) * TILE_COLUMNS
                tile = self._tile(index)
                buffer[:, column : column + tile.shape[1]] = tile
            yield start, stop, torch.from_numpy(buffer[:, : stop - start]).to(device=device, dtype=dtype)

    def _tile(self, index: int) -> np.ndarray:
        width = min(TILE_COLUMNS, self.input_dim_ - index * TILE_COLUMNS)
        return self._draw(_rng(self.seed_, index), (self.n_components_, width))


class RademacherProjection(_DenseProjection):
    """Dense random +-1 projection scaled by ``1/sqrt(k)`` (the paper's default).

    Parameters
    ----------
    block_bytes : int, default=32 MiB
        Size of the matrix block regenerated at a time; bounds the extra
        memory. The result does not depend on it.
    """

    _distribution = "rademacher"

    @staticmethod
    def _draw(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        count = shape[0] * shape[1]
        bits = np.unpackbits(np.frombuffer(rng.bytes(-(-count // 8)), dtype=np.uint8), count=count)
        return (bits.view(np.int8) * np.int8(-2) + np.int8(1)).astype(np.float32).reshape(shape)


class GaussianProjection(_DenseProjection):
    """Dense standard-normal projection scaled by ``1/sqrt(k)``.

    Parameters
    ----------
    block_bytes : int, default=32 MiB
        Size of the matrix block regenerated at a time.
    """

    _distribution = "gaussian"

    @staticmethod
    def _draw(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32)


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
        self.out_factor_, self.in_factor_ = (
            torch.from_numpy(RademacherProjection._draw(_rng(self.seed_, part), (k, d))) / math.sqrt(k)
            for part, k, d in zip(range(2), self.factor_shape_, self.gradient_shape_, strict=True)
        )
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
