"""Dense random projections (Rademacher, Gaussian), regenerated tile by tile from their seed.

The ``(k, D)`` matrix is never stored: it is defined tile by tile (each at
most ``TILE_BYTES``, drawn from a generator seeded by the base seed and the
tile's index) and regenerated at every projection, so the extra memory stays
about ``TILE_BYTES`` whatever the layer (a CPU draws its float64 tiles in
blocks of rows), and the result does not depend on the batch or the device.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._base import FlatGradientProjection, check_fitted, rng

__all__ = ["TILE_BYTES", "GaussianProjection", "RademacherProjection"]

TILE_BYTES = 16 * 2**20

# the 8 signs (+-1, most significant bit first, a set bit is -1) of every byte value
_BYTE_SIGNS = 1 - 2 * torch.from_numpy(np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1)).float()


class _DenseProjection(FlatGradientProjection):
    """Dense ``(k, D)`` random matrix, regenerated tile by tile from its seed."""

    @property
    def tile_columns(self) -> int:
        """Columns per tile: a multiple of 64 keeping a float32 tile under ``TILE_BYTES``."""
        return max(64, TILE_BYTES // (4 * self.n_components_) // 64 * 64)

    def project(self, gradients: torch.Tensor) -> torch.Tensor:
        """``(n, D)`` flattened gradients -> ``(n, k)``, accumulated in float64 on a CPU.

        A float32 matrix product on a CPU splits its long sums over threads
        in a way that depends on the thread count, so its last bits do too;
        float64 sums rounded to float32 afterwards do not show that.
        """
        self._check_width(gradients)
        dtype = torch.float64 if gradients.device.type == "cpu" else gradients.dtype
        out = gradients.new_zeros(gradients.shape[0], self.n_components_, dtype=dtype)
        part_columns = None
        for rows, columns, block in self._blocks(gradients.device, dtype):
            if columns != part_columns:
                part, part_columns = gradients[:, columns].to(dtype), columns
            out[:, rows].addmm_(part, block.T)
        return out.mul_(1.0 / math.sqrt(self.n_components_))

    def matrix(self) -> torch.Tensor:
        """The whole ``(k, D)`` matrix, scaled (for tests and small layers only)."""
        check_fitted(self)
        matrix = torch.empty(self.n_components_, self.input_dim_)
        for rows, columns, block in self._blocks(torch.device("cpu"), torch.float32):
            matrix[rows, columns] = block
        return matrix / math.sqrt(self.n_components_)

    def _blocks(self, device, dtype):
        """``(rows, columns, block)`` covering the matrix, drawn on the CPU in ``dtype``.

        Tile ``i`` (``tile_columns`` columns) is filled row-major by the
        generator seeded with ``i``. It is drawn in blocks of rows that
        continue that generator's stream (a multiple of 32 rows, so each block
        ends on a whole 4-byte draw), each at most about ``TILE_BYTES`` in
        ``dtype``, into one reused buffer: the matrix does not depend on
        ``dtype`` or on the block size.
        """
        width, k = self.tile_columns, self.n_components_
        rows_per_block = min(k, max(32, TILE_BYTES // (dtype.itemsize * width) // 32 * 32))
        buffer = torch.empty(rows_per_block * min(width, self.input_dim_), dtype=dtype)
        for index, start in enumerate(range(0, self.input_dim_, width)):
            stop = min(start + width, self.input_dim_)
            generator = rng(self.seed_, index)
            for first in range(0, k, rows_per_block):
                last = min(first + rows_per_block, k)
                block = buffer[: (last - first) * (stop - start)].view(last - first, stop - start)
                self._draw(generator, block)
                yield slice(first, last), slice(start, stop), block.to(device)


class RademacherProjection(_DenseProjection):
    """Dense random +-1 projection scaled by ``1/sqrt(k)`` (the paper's default).

    The matrix is drawn in tiles of at most 16 MiB, each from a generator
    seeded by the projection's seed and the tile's index, and regenerated at
    every :meth:`project`: it is never stored or pickled.
    """

    _seed_name = "rademacher"

    @staticmethod
    def _draw(rng: np.random.Generator, out: torch.Tensor) -> None:
        """Fill the contiguous ``out`` (any float dtype) with signs: bit ``i`` of the generator's
        bytes (most significant bit first) gives entry ``i``, ``-1`` for a set bit, each byte read
        as 8 signs at once."""
        count = out.numel()
        raw = torch.frombuffer(bytearray(rng.bytes(-(-count // 8))), dtype=torch.uint8).int()
        signs, flat = _BYTE_SIGNS.to(out.dtype), out.view(-1)
        if count % 8 == 0:
            torch.index_select(signs, 0, raw, out=flat.view(-1, 8))
        else:
            flat.copy_(signs[raw].flatten()[:count])


class GaussianProjection(_DenseProjection):
    """Dense standard-normal projection scaled by ``1/sqrt(k)``, regenerated in tiles like
    :class:`RademacherProjection`."""

    _seed_name = "gaussian"

    @staticmethod
    def _draw(rng: np.random.Generator, out: torch.Tensor) -> None:
        """Fill ``out`` with float32 standard normals (the same values in any dtype)."""
        out.copy_(torch.from_numpy(rng.standard_normal(out.shape, dtype=np.float32)))
