"""The subsampled randomised Hadamard transform: dense-like rows at ``O(D log k)`` cost (see the class)."""

from __future__ import annotations

import math

import numpy as np
import torch

from ._base import FlatGradientProjection, check_fitted, rng
from .dense import RademacherProjection

__all__ = ["CHUNK_ELEMENTS", "SRHTProjection"]


class SRHTProjection(FlatGradientProjection):
    """Subsampled randomised Hadamard transform: dense-like rows at ``O(D log k)`` cost.

    The flattened gradient ``x`` (length ``D``) is zero-padded to ``A``
    blocks ``x_a`` of ``B`` entries, ``B`` the smallest power of two of at
    least ``max(2 k, min(8 k, D))``. With independent random signs ``s`` (one per entry) and
    ``w`` (one per block and output), ``k`` distinct rows ``beta_r`` of the
    ``B x B`` Hadamard matrix ``H[i, l] = (-1)^popcount(i & l)`` drawn at
    random (without replacement; for a gradient shorter than one block, drawn
    so that ``P`` keeps rank ``min(k, D)``, see ``_rows_of_full_rank``),
    output ``r`` is::

        (P x)_r = 1/sqrt(k) * sum_a w[a, r] * (H (s_a * x_a))[beta_r]

    Row ``r`` of ``P`` has entry ``w[a, r] H[beta_r, l] s[a, l] / sqrt(k)`` at
    coordinate ``(a, l)``: given ``w`` and ``beta`` these are independent
    uniform signs over ``s``, so each row is distributed exactly as a row of
    the dense :class:`RademacherProjection`, entries ``+-1/sqrt(k)`` and
    ``E ||P x||^2 = ||x||^2``. Rows share ``s``; within a block, distinct
    Hadamard rows are orthogonal, and ``w`` makes the blocks' contributions
    to two outputs uncorrelated, so that (in expectation over the draw) the
    spread of ``||P x||^2 / ||x||^2`` matches the dense matrix's
    (``tests/test_projection.py`` compares both on the same inputs, low-rank
    and adversarially periodic ones included).

    ``H (s_a * x_a)`` is a fast Walsh-Hadamard transform: ``log2(B)`` stages
    of pairwise sums and differences, ``D log2(B)`` additions per sample
    instead of ``k D`` multiply-adds. Every step is an elementwise addition,
    subtraction or sign flip in a fixed order (the sum over blocks is a fixed
    pairwise tree), so the result does not depend on the number of threads.
    Nothing of size ``D`` is pickled: the signs are drawn from the seed on
    first use and kept in memory (``D + A k`` values) for later calls.

    Attributes
    ----------
    block_size_ : int
        ``B``, the length of each transformed block.
    n_blocks_ : int
        ``A = ceil(D / B)``.
    seed_ : int
        Seed of the signs and rows, derived from the estimator's seed.
    """

    _seed_name = "srht"

    def fit(self, gradient_shape: tuple[int, int], n_components: int, seed: int):
        super().fit(gradient_shape, n_components, seed)
        # at least 2k rows to choose from; up to 8k when the layer is wide: fewer blocks to sum
        self.block_size_ = _power_of_two_at_least(
            max(2 * self.n_components_, min(8 * self.n_components_, self.input_dim_))
        )
        self.n_blocks_ = -(-self.input_dim_ // self.block_size_)
        self._device_parts = {}
        return self

    def __getstate__(self):
        # a copy: the default state is the object's own ``__dict__``, which must keep its parts
        state = dict(super().__getstate__())
        state.pop("_device_parts", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if hasattr(self, "seed_"):
            self._device_parts = {}

    def project(self, gradients: torch.Tensor) -> torch.Tensor:
        """``(n, D)`` flattened gradients -> ``(n, k)``, in float32 (float64 for float64 input)."""
        self._check_width(gradients)
        n, dim, width = len(gradients), self.input_dim_, self.block_size_
        dtype = torch.float64 if gradients.dtype == torch.float64 else torch.float32
        signs, positions, block_signs = self._parts(gradients.device, dtype)
        gathered = torch.empty(n, self.n_blocks_, self.n_components_, dtype=dtype, device=gradients.device)
        chunk_blocks = _chunk_blocks(width, self.n_blocks_ * n, gradients.device)
        scratch = torch.empty(2, chunk_blocks * width, dtype=dtype, device=gradients.device)
        for samples, blocks in _chunks(n, self.n_blocks_, chunk_blocks):
            first, stop = blocks.start * width, min(blocks.stop * width, dim)
            count = (samples.stop - samples.start) * (blocks.stop - blocks.start)
            padded = scratch[0, : count * width].view(samples.stop - samples.start, -1)
            torch.mul(gradients[samples, first:stop], signs[first:stop], out=padded[:, : stop - first])
            padded[:, stop - first :].zero_()
            transformed = _hadamard_rows(padded.view(count, width), scratch[1, : count * width].view(count, width))
            gathered[samples, blocks] = transformed.index_select(1, positions).view(
                -1, blocks.stop - blocks.start, self.n_components_
            )
        return _sum_blocks(gathered.mul_(block_signs)).mul_(1.0 / math.sqrt(self.n_components_))

    def matrix(self) -> torch.Tensor:
        """The whole ``(k, D)`` matrix, built entry by entry from the definition (for tests and small layers)."""
        signs, rows, block_signs = self._draws()
        columns = np.arange(self.block_size_)
        hadamard = 1 - 2 * _parity(rows[:, None] & columns[None, :]).astype(np.float64)  # (k, B)
        blocks = signs.reshape(self.n_blocks_, self.block_size_).astype(np.float64)
        entries = block_signs.T[:, :, None] * hadamard[:, None, :] * blocks[None]  # (k, A, B)
        flat = entries.reshape(self.n_components_, -1)[:, : self.input_dim_]
        return torch.from_numpy(flat / math.sqrt(self.n_components_))

    def _draws(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Entry signs ``(A B,)``, Hadamard rows ``(k,)`` and block signs ``(A, k)`` from the seed."""
        check_fitted(self)
        signs = np.empty(self.n_blocks_ * self.block_size_, dtype=np.float32)
        RademacherProjection._draw(rng(self.seed_, 0), torch.from_numpy(signs))
        if self.input_dim_ >= self.block_size_:
            # k distinct rows: the order of B random 64-bit keys (plain generator bytes, stable across numpy)
            keys = np.frombuffer(rng(self.seed_, 1).bytes(8 * self.block_size_), dtype="<u8")
            rows = np.argsort(keys, kind="stable")[: self.n_components_]
        else:
            rows = _rows_of_full_rank(self.block_size_, self.input_dim_, self.n_components_, rng(self.seed_, 1))
        block_signs = np.empty((self.n_blocks_, self.n_components_), dtype=np.float32)
        RademacherProjection._draw(rng(self.seed_, 2), torch.from_numpy(block_signs))
        return signs, rows, block_signs

    def _parts(self, device: torch.device, dtype: torch.dtype):
        """The draws as tensors on ``device``: signs, where each chosen row lies in a transformed block, block signs."""
        key = (str(device), dtype)
        if key not in self._device_parts:
            signs, rows, block_signs = self._draws()
            minor = _hadamard_split(self.block_size_)[1]
            positions = (rows % minor) * (self.block_size_ // minor) + rows // minor
            self._device_parts[key] = (
                torch.from_numpy(signs).to(device=device, dtype=dtype),
                torch.from_numpy(positions).to(device),
                torch.from_numpy(block_signs).to(device=device, dtype=dtype),
            )
        return self._device_parts[key]


# Blocks transformed together on a CPU: about 512 KiB of float32, so that the log2(B) stages run in cache.
CHUNK_ELEMENTS = 2**17


def _chunk_blocks(width: int, total_blocks: int, device: torch.device) -> int:
    """Blocks per chunk: cache-sized on a CPU, all of them elsewhere."""
    return max(1, CHUNK_ELEMENTS // width) if device.type == "cpu" else total_blocks


def _chunks(n_samples: int, n_blocks: int, chunk_blocks: int):
    """``(samples, blocks)`` slices covering every block of every sample, ``chunk_blocks`` or fewer at once."""
    if chunk_blocks >= n_blocks:
        step = chunk_blocks // n_blocks
        for start in range(0, n_samples, step):
            yield slice(start, min(start + step, n_samples)), slice(0, n_blocks)
        return
    for sample in range(n_samples):
        for start in range(0, n_blocks, chunk_blocks):
            yield slice(sample, sample + 1), slice(start, min(start + chunk_blocks, n_blocks))


def _rows_of_full_rank(width: int, dim: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct rows of ``H_width`` whose first ``dim`` columns have rank ``min(count, dim)``.

    A gradient shorter than the block (``dim < width``) is zero-padded, so a
    row of ``P`` is a Hadamard row cut to its first ``dim`` columns, and cut
    rows can coincide: for ``l < width / 2`` the column index has no top bit,
    so ``H[i, l] = H[i + width / 2, l]``. Rows drawn uniformly then lose rank
    (33 of 40 at ``dim = k = 40``). With ``h = width / 2`` and
    ``H_width = [[H_h, H_h], [H_h, -H_h]]``, rows ``i`` and ``i + h`` both cut
    to ``[H_h[i], +-H_h[i][:dim - h]]``:

    - ``dim <= h``: only ``i mod h`` matters; choose rows of ``H_h`` for
      ``dim`` columns, each in a random half.
    - ``count <= h < dim``: ``count`` distinct residues ``i mod h``, each in a
      random half. Their first ``h`` columns are distinct rows of ``H_h``,
      orthogonal, so the rank is ``count``.
    - ``h < count``: every residue once (rank ``h`` on the first ``h``
      columns), and ``count - h`` residues twice, ``R``. A pair's sum and
      difference are ``2 [H_h[i], 0]`` and ``2 [0, H_h[i][:dim - h]]``, so the
      rank is ``h`` plus that of ``H_h[R]`` cut to ``dim - h`` columns: ``R``
      is chosen by the same rule, one level down, and the total is ``count``.

    Every row is still a Hadamard row times the random entry signs, so it is
    distributed as a dense Rademacher row. ``count > dim`` adds rows drawn
    uniformly from the others to ``dim`` rows of full rank.
    """
    if count > dim:
        chosen = _rows_of_full_rank(width, dim, dim, rng)
        others = np.setdiff1d(np.arange(width), chosen)
        return np.concatenate([chosen, rng.choice(others, count - dim, replace=False)])
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if width == 1:
        return np.zeros(1, dtype=np.int64)
    half = width // 2
    if dim <= half:
        rows = _rows_of_full_rank(half, dim, count, rng)
    elif count <= half:
        rows = rng.choice(half, count, replace=False)
    else:
        twice = _rows_of_full_rank(half, dim - half, count - half, rng)
        once = np.setdiff1d(np.arange(half), twice)
        return np.concatenate([twice, twice + half, once + half * rng.integers(0, 2, len(once))])
    return rows + half * rng.integers(0, 2, len(rows))


def _power_of_two_at_least(value: int) -> int:
    return 1 << (value - 1).bit_length()


def _hadamard_split(width: int) -> tuple[int, int]:
    """``(B1, B2)`` with ``B1 B2 = B``, both about ``sqrt(B)``."""
    major = 1 << ((width.bit_length() - 1) // 2)
    return major, width // major


def _hadamard_rows(rows: torch.Tensor, spare: torch.Tensor) -> torch.Tensor:
    """Unnormalised Walsh-Hadamard transform of each row (length ``B``, a power of two).

    ``H_B = H_B1 (x) H_B2``: each row, seen as a ``B1 x B2`` matrix, is
    transformed along its first axis, transposed, and transformed along the
    other, so every butterfly stage reads runs of at least ``min(B1, B2)``
    contiguous values. Output ``i1 B2 + i2`` ends at position ``i2 B1 + i1``.
    ``rows`` and ``spare`` (same shape) are both overwritten.
    """
    count = len(rows)
    major, minor = _hadamard_split(rows.shape[1])
    done, free = _butterflies(rows.view(count, major, minor), spare.view(count, major, minor))
    free.view(count, minor, major).copy_(done.transpose(1, 2))
    done, _ = _butterflies(free.view(count, minor, major), done.view(count, minor, major))
    return done.view(count, -1)


def _butterflies(values: torch.Tensor, spare: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hadamard transform along axis 1 of ``(m, L, h)``: ``log2(L)`` stages of sums and
    differences of pairs, alternating between the two buffers; returns (result, other buffer)."""
    count, length, inner = values.shape
    half = 1
    while half < length:
        first, second = values.view(count * length // (2 * half), 2, half * inner).unbind(1)
        sums, differences = spare.view(count * length // (2 * half), 2, half * inner).unbind(1)
        torch.add(first, second, out=sums)
        torch.sub(first, second, out=differences)
        values, spare = spare, values
        half *= 2
    return values, spare


def _sum_blocks(values: torch.Tensor) -> torch.Tensor:
    """``(n, A, k) -> (n, k)``, overwriting ``values``: the sum over blocks as a fixed pairwise
    tree (the same order on any thread count); with an odd count the middle block waits a level."""
    count = values.shape[1]
    while count > 1:
        half = count // 2
        values[:, :half] += values[:, count - half : count]
        count -= half
    return values[:, 0]


def _parity(values: np.ndarray) -> np.ndarray:
    """Parity of the number of set bits of each (non-negative) integer."""
    parity = np.zeros(values.shape, dtype=np.int64)
    while values.any():
        parity ^= values & 1
        values = values >> 1
    return parity
