"""Projections: regenerated blocks equal the one-shot matrix; distances preserved."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from skfungi import GaussianProjection, KroneckerProjection, RademacherProjection
from skfungi.projection import SRHTProjection, make_projection
from skfungi.projection import _base as projection_base
from skfungi.projection import dense as dense_module
from skfungi.projection import srht as srht_module


@pytest.mark.parametrize("cls", [RademacherProjection, GaussianProjection])
def test_dense_tiles_equal_the_materialised_matrix(cls, monkeypatch):
    monkeypatch.setattr(dense_module, "TILE_BYTES", 24 * 4 * 128)  # 128 columns a tile at k = 24
    shape = (7, 60)  # D = 420: three full tiles and a partial one
    projection = cls().fit(shape, 24, seed=3)
    assert projection.tile_columns == 128
    x = torch.randn(5, 420, generator=torch.Generator().manual_seed(0))
    matrix = projection.matrix()
    assert (
        matrix.shape == (24, 420)
        and len({tuple(matrix[:, i : i + 128].flatten()[:8].tolist()) for i in (0, 128, 256)}) == 3
    )
    expected = x.double() @ matrix.double().T
    torch.testing.assert_close(projection.project(x).double(), expected, rtol=1e-5, atol=1e-5)
    # row by row (batch size one) equals the batch; in float64 so that rounding of the float32
    # matmul, which differs between batch shapes, cannot hide a wrong tile
    x64 = x.double()
    rows = torch.cat([projection.project(x64[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(rows, projection.project(x64), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", [RademacherProjection, GaussianProjection])
@pytest.mark.parametrize("shape", [(7, 60), (5, 61)])  # the last tile of the second is 61 - 3 * 16 = 13 columns
def test_dense_matrix_is_one_seeded_draw_per_tile_whatever_the_row_blocks(cls, shape, monkeypatch):
    """Tile i is filled row-major by the generator seeded with i: drawn in blocks of 32 rows
    (a float64 buffer of 32 x 16 values) it is the same matrix as drawn in one piece."""
    monkeypatch.setattr(dense_module, "TILE_BYTES", 96 * 4 * 16)
    projection = cls().fit(shape, 96, seed=5)
    monkeypatch.setattr(type(projection), "tile_columns", property(lambda self: 16))
    blocks = list(projection._blocks(torch.device("cpu"), torch.float64))
    assert {rows.stop - rows.start for rows, _, _ in blocks} == {32}  # 3 blocks of rows per tile
    expected = []
    for index, start in enumerate(range(0, math.prod(shape), 16)):
        tile = torch.empty(96, min(16, math.prod(shape) - start), dtype=torch.float64)
        cls._draw(projection_base.rng(projection.seed_, index), tile)
        expected.append(tile)
    torch.testing.assert_close(projection.matrix().double() * math.sqrt(96), torch.cat(expected, dim=1))
    x = torch.randn(3, math.prod(shape), dtype=torch.float64)
    expected_projection = x @ torch.cat(expected, dim=1).T / math.sqrt(96)
    torch.testing.assert_close(projection.project(x), expected_projection, rtol=1e-12, atol=1e-12)


def test_dense_tiles_stay_small_for_the_largest_layers():
    vit_b = RademacherProjection().fit((768, 769), 768, seed=0)
    assert 4 * vit_b.n_components_ * vit_b.tile_columns <= dense_module.TILE_BYTES < 64 * 2**20


def test_rademacher_entries_are_signs_over_sqrt_k():
    matrix = RademacherProjection().fit((10, 50), 16, seed=0).matrix()
    assert set(np.unique(matrix.numpy() * math.sqrt(16)).tolist()) == {-1.0, 1.0}
    assert abs(float(matrix.mean()) * math.sqrt(16)) < 0.05


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(16, 64), (7, 13), (1, 1), (3, 1001)])
def test_rademacher_signs_are_the_generator_bits_in_order(shape, dtype):
    """Entry i is -1 exactly when bit i of the generator's bytes is set (most significant
    bit first), also when the count is not a multiple of 8, in float32 and float64 alike:
    the features of a seed stay the same whatever way the signs are unpacked."""
    out = torch.empty(shape, dtype=dtype)
    RademacherProjection._draw(projection_base.rng(9, 2), out)
    count = math.prod(shape)
    raw = np.frombuffer(projection_base.rng(9, 2).bytes(-(-count // 8)), dtype=np.uint8)
    bits = [(int(byte) >> (7 - position)) & 1 for byte in raw for position in range(8)][:count]
    np.testing.assert_array_equal(out.reshape(-1).numpy(), 1 - 2 * np.array(bits, dtype=np.float64))


def test_projection_is_a_function_of_the_seed_only():
    first = RademacherProjection().fit((10, 50), 16, seed=0).matrix()
    again = RademacherProjection().fit((10, 50), 16, seed=0).matrix()
    other = RademacherProjection().fit((10, 50), 16, seed=1).matrix()
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_dense_reduce_is_the_row_major_flattened_gradient():
    g, a = torch.randn(3, 4, 5), torch.randn(3, 4, 6)
    reduced = RademacherProjection().fit((5, 6), 8, seed=0).reduce(g, a)
    for s in range(3):
        expected = sum(torch.outer(g[s, t], a[s, t]) for t in range(4)).flatten()
        torch.testing.assert_close(reduced[s], expected)


def test_kronecker_equals_its_dense_equivalent_without_forming_the_gradient():
    projection = KroneckerProjection().fit((5, 6), 12, seed=0)
    assert projection.factor_shape_ == (3, 4)
    g, a = torch.randn(3, 4, 5, dtype=torch.float64), torch.randn(3, 4, 6, dtype=torch.float64)
    gradients = torch.bmm(g.transpose(1, 2), a).flatten(1)
    expected = gradients @ projection.matrix().double().T
    torch.testing.assert_close(projection.project(projection.reduce(g, a)), expected)


@pytest.mark.parametrize(
    "projection", [RademacherProjection(), GaussianProjection(), KroneckerProjection(), SRHTProjection()]
)
def test_pairwise_distances_are_preserved_within_jl_tolerance(projection):
    torch.manual_seed(0)
    shape, k = (40, 60), 256
    # rank-2 "gradients", like a sum over two views of outer products
    g, a = torch.randn(20, 2, shape[0]), torch.randn(20, 2, shape[1])
    gradients = torch.bmm(g.transpose(1, 2), a).flatten(1)
    projection.fit(shape, k, seed=0)
    projected = projection.project(projection.reduce(g, a))
    ratio = torch.pdist(projected) / torch.pdist(gradients)
    # Dense: squared-distance ratios have std ~ sqrt(2 / k) ~ 0.09, so distances stay within ~3 sigma.
    # Kronecker: unbiased too, but each factor has only 16 rows, so for low-rank inputs the ratio's
    # std is ~ sqrt(2 / 16) / 2 * sqrt(2) ~ 0.25 (the price of never forming the gradient).
    kronecker = isinstance(projection, KroneckerProjection)
    assert float((ratio - 1).abs().max()) < (0.6 if kronecker else 0.25)
    assert abs(float(ratio.pow(2).mean()) - 1) < (0.15 if kronecker else 0.1)


def test_make_projection_errors():
    with pytest.raises(ValueError, match="unknown projection 'sparse'"):
        make_projection("sparse")
    with pytest.raises(TypeError, match="fit, reduce and project"):
        make_projection(object())


# -- subsampled randomised Hadamard transform ------------------------------------------


@pytest.mark.parametrize(
    ("shape", "k", "chunk"),
    [
        ((5, 6), 4, None),  # D = 30 < B: one padded block
        ((3, 5), 64, None),  # k > D
        ((40, 61), 32, None),  # ten blocks, the last one padded
        ((40, 61), 16, 64),  # chunks of one block: each sample's blocks in several pieces
        ((7, 9), 8, 4096),  # several samples per chunk
        ((1, 1), 3, None),
    ],
)
def test_srht_equals_its_explicit_matrix(shape, k, chunk, monkeypatch):
    """The fast transform equals ``x @ P.T`` with ``P`` built entry by entry from the definition
    (Hadamard entries from the parity of ``popcount(i & l)``), and its entries are +-1/sqrt(k)."""
    if chunk is not None:
        monkeypatch.setattr(srht_module, "CHUNK_ELEMENTS", chunk)
    projection = SRHTProjection().fit(shape, k, seed=3)
    matrix = projection.matrix()
    assert matrix.shape == (k, math.prod(shape)) and matrix.dtype == torch.float64
    assert set(np.unique(matrix.numpy() * math.sqrt(k)).tolist()) <= {-1.0, 1.0}
    x = torch.randn(6, math.prod(shape), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(projection.project(x), x @ matrix.T, rtol=1e-12, atol=1e-12)


def test_srht_block_size_and_rows():
    vit_b = SRHTProjection().fit((768, 769), 768, seed=0)
    assert (vit_b.block_size_, vit_b.n_blocks_) == (8192, 73)  # 8 k rounded up; 590,592 entries padded to 598,016
    small = SRHTProjection().fit((5, 6), 4, seed=0)
    assert (small.block_size_, small.n_blocks_) == (32, 1)
    signs, rows, block_signs = small._draws()
    assert len(set(rows.tolist())) == 4 and rows.max() < 32  # k distinct Hadamard rows
    assert signs.shape == (32,) and block_signs.shape == (1, 4)


def test_srht_preserves_norms_as_the_dense_matrix_does():
    """``||P x||^2 / ||x||^2`` over 200 seeds: mean 1 and the dense matrix's spread,
    ``sqrt(2 (||x||^4 - sum x_i^4) / k) / ||x||^2``, for inputs a structured transform could
    get wrong: low rank, one block, constant, and periodic with the block size or the
    gradient's row length (every entry of one input column). The Kronecker projection's
    spread on the rank-one input is shown beside it (about four times larger)."""
    shape, k = (40, 64), 64
    dim = math.prod(shape)
    width = SRHTProjection().fit(shape, k, 0).block_size_
    generator = torch.Generator().manual_seed(0)
    rank_one = torch.outer(torch.randn(40, generator=generator), torch.randn(64, generator=generator)).flatten()
    one_block, periodic, column = torch.zeros(dim), torch.zeros(dim), torch.zeros(dim)
    one_block[:width] = torch.randn(width, generator=generator)
    periodic[::width] = 1.0
    column[3::64] = 1.0
    inputs = torch.stack(
        [torch.randn(dim, generator=generator), rank_one, one_block, torch.ones(dim), periodic, column]
    )
    inputs = inputs.double()
    seeds = range(200)
    expected_spread = torch.sqrt(2 * (inputs.pow(2).sum(1) ** 2 - inputs.pow(4).sum(1)) / k) / inputs.pow(2).sum(1)
    for projection_class in (SRHTProjection, RademacherProjection):
        ratios = torch.stack([projection_class().fit(shape, k, seed).project(inputs).pow(2).sum(1) for seed in seeds])
        ratios = ratios / inputs.pow(2).sum(1)
        assert ((ratios.mean(0) - 1).abs() < 4 * expected_spread / math.sqrt(len(seeds))).all(), projection_class
        assert (ratios.std(0) < 1.2 * expected_spread).all(), (projection_class, ratios.std(0) / expected_spread)
    kronecker = torch.stack(
        [
            (KroneckerProjection().fit(shape, k, seed).matrix().double() @ rank_one.double()).pow(2).sum()
            for seed in seeds
        ]
    )
    assert float((kronecker / rank_one.double().pow(2).sum()).std()) > 3 * float(expected_spread[1])


def test_srht_is_a_function_of_the_seed_and_pickles_without_its_signs():
    x = torch.randn(3, 768 * 769)
    projection = SRHTProjection().fit((768, 769), 768, seed=0)
    first = projection.project(x)
    assert torch.equal(first, SRHTProjection().fit((768, 769), 768, seed=0).project(x))
    assert not torch.equal(first, SRHTProjection().fit((768, 769), 768, seed=1).project(x))
    dumped = pickle.dumps(projection)
    assert len(dumped) < 4096  # neither the 598,016 signs nor anything of that size
    restored = pickle.loads(dumped)
    assert torch.equal(restored.project(x), first)
    assert torch.equal(projection.project(x), first)  # pickling left the original whole
    assert make_projection("SRHT").fit((768, 769), 768, seed=0).project(x[:1]).equal(first[:1])


def test_srht_rows_do_not_depend_on_the_batch_or_the_thread_count():
    """float32 rows alone, in a batch, at 1, 2 and 4 threads: identical bit for bit (every step
    is an elementwise sum, difference or sign flip in a fixed order)."""
    projection = SRHTProjection().fit((300, 97), 64, seed=0)
    x = torch.randn(7, 300 * 97, generator=torch.Generator().manual_seed(1))
    threads = torch.get_num_threads()
    try:
        results = []
        for count in (1, 2, 4):
            torch.set_num_threads(count)
            results.append(projection.project(x))
        alone = torch.cat([projection.project(x[i : i + 1]) for i in range(len(x))])
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(result, results[0]) for result in results) and torch.equal(alone, results[0])
    assert results[0].dtype == torch.float32


def test_srht_checks_the_gradient_width():
    with pytest.raises(ValueError, match="expected gradients of width 30, got 31"):
        SRHTProjection().fit((5, 6), 4, seed=0).project(torch.zeros(2, 31))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(
    "shape, k",
    [((4, 10), 40), ((7, 9), 63), ((3, 3), 9), ((8, 8), 64), ((5, 13), 30), ((5, 13), 64), ((1, 2), 5), ((9, 7), 17)],
)
def test_srht_keeps_the_rank_of_a_sampling_without_replacement(shape, k, seed):
    """A gradient shorter than the Hadamard block is zero-padded: rows drawn uniformly then cut to
    the same first columns (rank 33 of 40 at D = k = 40). The rows are drawn so that ``P`` keeps
    rank ``min(k, D)``, its rows stay distinct and its entries +-1/sqrt(k)."""
    projection = SRHTProjection().fit(shape, k, seed)
    assert projection.input_dim_ < projection.block_size_  # the padded case
    _, rows, _ = projection._draws()
    assert len(set(rows.tolist())) == k and rows.max() < projection.block_size_
    matrix = projection.matrix().numpy()
    assert np.linalg.matrix_rank(matrix) == min(k, math.prod(shape))
    if k <= math.prod(shape):
        assert len({tuple(row) for row in matrix.round(12)}) == k  # no two equal rows
    np.testing.assert_allclose(np.abs(matrix) * math.sqrt(k), 1.0, rtol=1e-12)


def test_projections_refuse_bad_fit_arguments_and_use_before_fit():
    for cls in (RademacherProjection, GaussianProjection, SRHTProjection, KroneckerProjection):
        with pytest.raises(ValueError, match="n_components must be a positive int"):
            cls().fit((3, 4), 0, seed=0)
        with pytest.raises(ValueError, match="gradient_shape must be a pair of positive ints"):
            cls().fit((3, 0), 2, seed=0)
        with pytest.raises(ValueError, match="seed must be a non-negative int"):
            cls().fit((3, 4), 2, seed=-1)
        with pytest.raises(NotFittedError, match=f"This {cls.__name__} is not fitted yet: FungiTransformer fits it"):
            cls().matrix()
    for cls in (RademacherProjection, GaussianProjection, SRHTProjection):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            cls().project(torch.zeros(2, 12))
    with pytest.raises(NotFittedError, match="not fitted yet"):
        KroneckerProjection().reduce(torch.zeros(2, 1, 3), torch.zeros(2, 1, 4))
