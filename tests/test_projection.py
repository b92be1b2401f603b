"""Projections: regenerated blocks equal the one-shot matrix; distances preserved."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from skfungi import GaussianProjection, KroneckerProjection, RademacherProjection
from skfungi._core import projection as projection_module
from skfungi._core.projection import make_projection


@pytest.mark.parametrize("cls", [RademacherProjection, GaussianProjection])
def test_dense_tiles_equal_the_materialised_matrix(cls, monkeypatch):
    monkeypatch.setattr(projection_module, "TILE_BYTES", 24 * 4 * 128)  # 128 columns a tile at k = 24
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


def test_dense_tiles_stay_small_for_the_largest_layers():
    vit_b = RademacherProjection().fit((768, 769), 768, seed=0)
    assert 4 * vit_b.n_components_ * vit_b.tile_columns <= projection_module.TILE_BYTES < 64 * 2**20


def test_rademacher_entries_are_signs_over_sqrt_k():
    matrix = RademacherProjection().fit((10, 50), 16, seed=0).matrix()
    assert set(np.unique(matrix.numpy() * math.sqrt(16)).tolist()) == {-1.0, 1.0}
    assert abs(float(matrix.mean()) * math.sqrt(16)) < 0.05


@pytest.mark.parametrize("shape", [(16, 64), (7, 13), (1, 1), (3, 1001)])
def test_rademacher_signs_are_the_generator_bits_in_order(shape):
    """Entry i is -1 exactly when bit i of the generator's bytes is set (most significant
    bit first), also when the count is not a multiple of 8: the features of a seed stay the
    same whatever way the signs are unpacked."""
    out = np.empty(shape, dtype=np.float32)
    RademacherProjection._draw(projection_module._rng(9, 2), out)
    count = math.prod(shape)
    raw = np.frombuffer(projection_module._rng(9, 2).bytes(-(-count // 8)), dtype=np.uint8)
    bits = [(int(byte) >> (7 - position)) & 1 for byte in raw for position in range(8)][:count]
    np.testing.assert_array_equal(out.reshape(-1), 1 - 2 * np.array(bits, dtype=np.float32))


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


@pytest.mark.parametrize("projection", [RademacherProjection(), GaussianProjection(), KroneckerProjection()])
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
