"""PatchIndex and PatchMemoryBank against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from skfungi.dense import PatchMemoryBank
from skfungi.dense.index import PatchIndex


def unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def brute_force(rows, groups, queries, k, exclude):
    similarities = queries.astype(np.float64) @ rows.T.astype(np.float64)
    if exclude is not None:
        similarities[:, groups == exclude] = -np.inf
    order = np.argsort(-similarities, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(similarities, order, 1), order


@pytest.mark.parametrize("algorithm", ["exact", "hnsw"])
@pytest.mark.parametrize("exclude", [None, 3])
def test_search_finds_the_most_similar_rows_outside_the_group(algorithm, exclude):
    rows, queries = unit_rows(400, 16, 0), unit_rows(30, 16, 1)
    groups = np.repeat(np.arange(10), 40)
    index = PatchIndex(algorithm).fit(rows[:150], groups[:150], expected_rows=400).partial_fit(rows[150:], groups[150:])
    similarities, indices = index.search(queries, 5, exclude_group=exclude)
    expected_similarities, expected = brute_force(rows, groups, queries, 5, exclude)
    assert index.algorithm_ == algorithm
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(similarities, expected_similarities, atol=1e-5)
    np.testing.assert_allclose(index.vectors(indices[:2]), rows[indices[:2]], atol=1e-6)  # hnswlib renormalises


def test_auto_decides_on_the_expected_size():
    rows = unit_rows(20, 4, 0)
    assert PatchIndex().fit(rows).algorithm_ == "exact"
    assert PatchIndex().fit(rows, expected_rows=1_000_000).algorithm_ == "hnsw"


def test_too_few_rows_outside_the_group_is_refused():
    index = PatchIndex().fit(unit_rows(6, 4, 0), np.array([0, 0, 0, 0, 1, 1]))
    with pytest.raises(ValueError, match="cannot return 3 neighbours: the index holds 6 rows, 4 of them"):
        index.search(unit_rows(1, 4, 1), 3, exclude_group=0)


@pytest.mark.parametrize("algorithm", ["exact", "hnsw"])
def test_bank_votes_with_a_softmax_over_similarities(algorithm):
    features, queries = unit_rows(300, 8, 2), unit_rows(20, 8, 3)
    labels = np.random.default_rng(4).dirichlet(np.ones(5), size=300).astype(np.float32)
    bank = PatchMemoryBank(n_neighbors=7, temperature=0.05, algorithm=algorithm).fit(features[:100], labels[:100])
    bank.partial_fit(features[100:], labels[100:])
    similarities, nearest = brute_force(features, None, queries, 7, None)
    weights = np.exp(similarities / 0.05)
    weights /= weights.sum(1, keepdims=True)
    expected = np.einsum("qk,qkc->qc", weights, labels[nearest])
    np.testing.assert_allclose(bank.predict_proba(queries), expected, rtol=1e-4, atol=1e-6)
    assert bank.n_patches_ == 300 and bank.labels_.shape == (300, 5)


def test_bank_refuses_more_neighbours_than_patches_and_misshapen_labels():
    bank = PatchMemoryBank(n_neighbors=5).fit(unit_rows(4, 3, 0), np.eye(4, dtype=np.float32))
    with pytest.raises(ValueError, match="n_neighbors=5 exceeds the 4 patches"):
        bank.predict_proba(unit_rows(1, 3, 1))
    with pytest.raises(ValueError, match="labels must be \\(2, 4\\)"):
        bank.partial_fit(unit_rows(2, 3, 2), np.ones((2, 3)))
