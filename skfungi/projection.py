"""Seeded random projections of per-sample gradients.

Dense projections (:class:`RademacherProjection`, :class:`GaussianProjection`)
multiply the flattened ``d_out x (d_in + 1)`` gradient by a ``(k, D)`` random
matrix scaled by ``1/sqrt(k)``. The matrix is never stored: it is defined
tile by tile (each at most ``TILE_BYTES``, drawn from a generator seeded by
the base seed and the tile's index) and regenerated at every projection, so
the extra memory stays about ``TILE_BYTES`` whatever the layer (a CPU draws its
float64 tiles in blocks of rows), and the result does not depend on the batch or
the device.

:class:`SRHTProjection` (subsampled randomised Hadamard transform) has rows
that are, like the dense ones, uniformly random sign vectors over all ``D``
coordinates, but applies them in ``O(D log k)`` instead of ``O(D k)``
operations per sample (see its docstring).

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
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ._utils.seeding import derive_seed

__all__ = ["GaussianProjection", "KroneckerProjection", "RademacherProjection", "SRHTProjection", "make_projection"]

TILE_BYTES = 16 * 2**20

# the 8 signs (+-1, most significant bit first, a set bit is -1) of every byte value
_BYTE_SIGNS = 1 - 2 * torch.from_numpy(np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1)).float()


class _FlatGradientProjection(BaseEstimator):
    """A ``(k, D)`` projection of the formed gradient, flattened row-major."""

    def fit(self, gradient_shape: tuple[int, int], n_components: int, seed: int):
        self.gradient_shape_, self.n_components_ = _checked_fit_arguments(gradient_shape, n_components, seed)
        self.input_dim_ = math.prod(self.gradient_shape_)
        self.seed_ = derive_seed(seed, "projection", self._seed_name)
        return self

    def reduce(self, g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Per-sample flattened gradients ``(S, d_out * d_in)``, row-major."""
        return torch.bmm(g.transpose(1, 2), a).flatten(1)

    def _check_width(self, gradients: torch.Tensor) -> None:
        _check_fitted(self)
        if gradients.shape[-1] != self.input_dim_:
            raise ValueError(f"expected gradients of width {self.input_dim_}, got {gradients.shape[-1]}.")


class _DenseProjection(_FlatGradientProjection):
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
        _check_fitted(self)
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
            rng = _rng(self.seed_, index)
            for first in range(0, k, rows_per_block):
                last = min(first + rows_per_block, k)
                block = buffer[: (last - first) * (stop - start)].view(last - first, stop - start)
                self._draw(rng, block)
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


class SRHTProjection(_FlatGradientProjection):
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
        _check_fitted(self)
        signs = np.empty(self.n_blocks_ * self.block_size_, dtype=np.float32)
        RademacherProjection._draw(_rng(self.seed_, 0), torch.from_numpy(signs))
        if self.input_dim_ >= self.block_size_:
            # k distinct rows: the order of B random 64-bit keys (plain generator bytes, stable across numpy)
            keys = np.frombuffer(_rng(self.seed_, 1).bytes(8 * self.block_size_), dtype="<u8")
            rows = np.argsort(keys, kind="stable")[: self.n_components_]
        else:
            rows = _rows_of_full_rank(self.block_size_, self.input_dim_, self.n_components_, _rng(self.seed_, 1))
        block_signs = np.empty((self.n_blocks_, self.n_components_), dtype=np.float32)
        RademacherProjection._draw(_rng(self.seed_, 2), torch.from_numpy(block_signs))
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


class KroneckerProjection(BaseEstimator):
    """Structured projection ``P_out (x) P_in`` that never forms the gradient.

    ``k = k_out * k_in`` with ``k_out`` the largest divisor of ``k`` not above
    ``sqrt(k)``; both factors are Rademacher matrices scaled by
    ``1/sqrt(k_out)`` and ``1/sqrt(k_in)``, so ``P`` has entries ``+-1/sqrt(k)``
    like the dense projection. Cost per sample: ``M (d_out k_out + d_in k_in)``
    for ``M`` gradient tokens, instead of ``d_out d_in (M + k)``.
    """

    def fit(self, gradient_shape: tuple[int, int], n_components: int, seed: int):
        self.gradient_shape_, self.n_components_ = _checked_fit_arguments(gradient_shape, n_components, seed)
        self.input_dim_ = math.prod(self.gradient_shape_)
        k_out = max(d for d in range(1, math.isqrt(self.n_components_) + 1) if self.n_components_ % d == 0)
        self.factor_shape_ = (k_out, self.n_components_ // k_out)
        self.seed_ = derive_seed(seed, "projection", "kronecker")
        factors = []
        for part, (k, d) in enumerate(zip(self.factor_shape_, self.gradient_shape_, strict=True)):
            factor = torch.empty(k, d)
            RademacherProjection._draw(_rng(self.seed_, part), factor)
            factors.append(factor / math.sqrt(k))
        self.out_factor_, self.in_factor_ = factors
        return self

    def reduce(self, g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        _check_fitted(self)
        out_factor = self.out_factor_.to(device=g.device, dtype=g.dtype)
        in_factor = self.in_factor_.to(device=a.device, dtype=a.dtype)
        return torch.bmm((g @ out_factor.T).transpose(1, 2), a @ in_factor.T).flatten(1)

    def project(self, reduced: torch.Tensor) -> torch.Tensor:
        return reduced

    def matrix(self) -> torch.Tensor:
        """The equivalent dense ``(k, D)`` matrix (for tests and small layers only)."""
        _check_fitted(self)
        return torch.kron(self.out_factor_, self.in_factor_)


def _check_fitted(projection) -> None:
    check_is_fitted(
        projection,
        "seed_",
        msg="This %(name)s is not fitted yet: FungiTransformer fits it in its own fit, or call "
        "fit(gradient_shape, n_components, seed) before using it.",
    )


def _checked_fit_arguments(gradient_shape, n_components, seed) -> tuple[tuple[int, int], int]:
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


def _rng(seed: int, part: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, part])))


PROJECTIONS = {
    "rademacher": RademacherProjection,
    "gaussian": GaussianProjection,
    "kronecker": KroneckerProjection,
    "srht": SRHTProjection,
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
        "projection must be 'rademacher', 'gaussian', 'kronecker', 'srht' or an object with "
        f"fit, reduce and project methods; got {type(projection).__name__}."
    )
