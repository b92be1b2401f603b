"""HNSWTransformer: the KNeighborsTransformer contract, hnswlib's traps, streaming, pickling, bad input."""

from __future__ import annotations

import pickle
import subprocess
import sys

import hnswlib
import joblib
import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from sklearn.neighbors import KNeighborsClassifier, KNeighborsTransformer
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from skfungi.neighbors import HNSWTransformer

EXACT_METRIC = {"euclidean": "euclidean", "sqeuclidean": "sqeuclidean", "cosine": "cosine"}


def data(n=300, d=12, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(dtype)


def exact_ip_neighbors(X, queries, k):
    distances = 1 - queries @ X.T
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distances, order, axis=1), order


@parametrize_with_checks(
    [HNSWTransformer(), HNSWTransformer(metric="cosine", mode="connectivity", n_neighbors=3, ef=4)]
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


# -- agreement with the exact transformer (small data: HNSW is exact there) -----------------


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
@pytest.mark.parametrize("mode", ["distance", "connectivity"])
def test_graphs_equal_exact_kneighbors_transformer(metric, mode):
    X, queries = data(), data(40, seed=1)
    approximate = HNSWTransformer(n_neighbors=6, metric=metric, mode=mode, random_state=0)
    exact = KNeighborsTransformer(n_neighbors=6, metric=EXACT_METRIC[metric], mode=mode, algorithm="brute")
    for ours, theirs in [
        (approximate.fit_transform(X), exact.fit_transform(X)),
        (approximate.transform(queries), exact.transform(queries)),
        (approximate.kneighbors_graph(None, 4, mode), exact.kneighbors_graph(None, 4, mode)),
    ]:
        assert sp.isspmatrix_csr(ours) and ours.shape == theirs.shape
        np.testing.assert_array_equal(np.diff(ours.indptr), np.diff(theirs.indptr))
        np.testing.assert_array_equal(ours.indices, theirs.indices)
        np.testing.assert_allclose(ours.data, theirs.data, atol=1e-5)


def test_entries_per_row_follow_the_contract():
    X = data()
    distance = HNSWTransformer(n_neighbors=5).fit(X)
    assert np.all(np.diff(distance.transform(X).indptr) == 6)  # n_neighbors + 1: the query itself first
    assert np.all(distance.transform(X).indices.reshape(-1, 6)[:, 0] == np.arange(len(X)))
    connectivity = HNSWTransformer(n_neighbors=5, mode="connectivity").fit(X)
    graph = connectivity.transform(X)
    assert np.all(np.diff(graph.indptr) == 5) and np.all(graph.data == 1)


def test_kneighbors_of_training_rows_leave_the_row_out():
    X = data()
    model = HNSWTransformer(n_neighbors=4, random_state=0).fit(X)
    distances, indices = model.kneighbors()
    assert indices.shape == (300, 4) and not np.any(indices == np.arange(300)[:, None])
    exact_distances, exact_indices = KNeighborsTransformer(n_neighbors=4, algorithm="brute").fit(X).kneighbors()
    np.testing.assert_array_equal(indices, exact_indices)
    np.testing.assert_allclose(distances, exact_distances, atol=1e-5)


def test_inner_product_is_hnswlib_one_minus_dot():
    X, queries = data(seed=2), data(30, seed=3)
    distances, indices = HNSWTransformer(metric="ip", random_state=0).fit(X).kneighbors(queries, 7)
    exact_distances, exact_indices = exact_ip_neighbors(X, queries, 7)
    np.testing.assert_array_equal(indices, exact_indices)
    np.testing.assert_allclose(distances, exact_distances, atol=1e-4)
    assert distances.min() < 0  # unclipped: a similarity above 1 is a negative "distance"


# -- hnswlib's traps --------------------------------------------------------------------------


def test_cosine_self_distance_is_clipped_at_zero():
    X = data(200, 24, dtype=np.float32)
    raw = hnswlib.Index("cosine", 24)
    raw.init_index(200, random_seed=0)
    raw.add_items(X, num_threads=1)
    assert raw.knn_query(X, k=1, num_threads=1)[1].min() < 0  # the trap this guards against
    graph = HNSWTransformer(n_neighbors=3, metric="cosine", random_state=0).fit_transform(X)
    assert graph.data.min() >= 0
    self_distances = graph.data.reshape(200, 4)[:, 0]
    np.testing.assert_allclose(self_distances, 0, atol=1e-6)


def test_euclidean_is_the_square_root_of_hnswlib_l2():
    X = data()
    euclidean = HNSWTransformer(metric="euclidean", random_state=0).fit(X).kneighbors(X[:10], 5)[0]
    squared = HNSWTransformer(metric="sqeuclidean", random_state=0).fit(X).kneighbors(X[:10], 5)[0]
    exact = KNeighborsTransformer(algorithm="brute").fit(X).kneighbors(X[:10], 5)[0]
    np.testing.assert_allclose(euclidean, exact, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(squared, exact**2, rtol=1e-5, atol=1e-6)


def test_indices_are_intp_and_distances_follow_the_query_dtype():
    X = data()
    model = HNSWTransformer(random_state=0).fit(X)
    for dtype in (np.float32, np.float64):
        distances, indices = model.kneighbors(X[:5].astype(dtype))
        assert indices.dtype == np.intp and distances.dtype == dtype
        assert model.transform(X[:5].astype(dtype)).dtype == dtype


def test_ef_below_k_is_raised_for_the_search_and_restored():
    X = data()
    model = HNSWTransformer(n_neighbors=5, ef=2, random_state=0).fit(X)
    indices = model.kneighbors(X[:20], 40, return_distance=False)
    exact = KNeighborsTransformer(n_neighbors=40, algorithm="brute").fit(X).kneighbors(X[:20], return_distance=False)
    np.testing.assert_array_equal(indices, exact)
    assert model.index_.ef == 2


def test_ef_can_be_changed_after_fitting():
    model = HNSWTransformer(ef=10, random_state=0).fit(data())
    model.set_params(ef=64).kneighbors(data(3, seed=5))
    assert model.index_.ef == 64


# -- streaming ------------------------------------------------------------------------------------


def test_partial_fit_in_chunks_builds_the_same_index_as_fit():
    X = data(500, 16, dtype=np.float32)
    whole = HNSWTransformer(n_neighbors=8, M=4, ef_construction=16, ef=8, random_state=3).fit(X)
    streamed = HNSWTransformer(n_neighbors=8, M=4, ef_construction=16, ef=8, random_state=3)
    for chunk in np.array_split(X, [7, 100, 101, 350]):
        streamed.partial_fit(chunk)
    assert streamed.n_samples_fit_ == 500 and streamed.index_.get_max_elements() >= 500
    queries = data(50, 16, seed=9)
    np.testing.assert_array_equal(streamed.transform(queries).indices, whole.transform(queries).indices)
    np.testing.assert_array_equal(streamed.index_.get_ids_list(), whole.index_.get_ids_list())


def test_fit_in_batches_equals_fit_in_one_call_and_accepts_a_memmap(tmp_path):
    X = data(400, 8, dtype=np.float32)
    stored = np.lib.format.open_memmap(tmp_path / "vectors.npy", mode="w+", dtype=np.float32, shape=X.shape)
    stored[:] = X
    stored.flush()
    readonly = np.load(tmp_path / "vectors.npy", mmap_mode="r")
    batched = HNSWTransformer(batch_size=33, random_state=0).fit(readonly)
    single = HNSWTransformer(batch_size=10_000, random_state=0).fit(X)
    assert (batched.transform(X[:30]) != single.transform(X[:30])).nnz == 0


def test_threads_give_the_exact_neighbours_on_small_data():
    X = data()
    threaded = HNSWTransformer(n_neighbors=5, n_jobs=2, random_state=0).fit(X)
    exact = KNeighborsTransformer(n_neighbors=5, algorithm="brute").fit(X)
    np.testing.assert_array_equal(threaded.transform(X).indices, exact.transform(X).indices)


def test_more_neighbours_than_a_poorly_connected_graph_reaches_fall_back_to_exact_search():
    X = data(2000, 32)
    model = HNSWTransformer(M=2, ef_construction=2, ef=2, random_state=0).fit(X)
    with pytest.warns(RuntimeWarning, match="exact search"):
        distances, indices = model.kneighbors(X[:5], 1500)
    exact_distances, exact_indices = KNeighborsTransformer(algorithm="brute").fit(X).kneighbors(X[:5], 1500)
    # a self-distance is 0 for one and float32 rounding (~1e-7) for the other: rtol alone cannot hold at 0
    np.testing.assert_allclose(distances, exact_distances, rtol=1e-4, atol=1e-5)
    assert np.mean(indices == exact_indices) > 0.99  # float32 near-ties may swap
    assert model.index_.ef == 2


# -- pipelines, pickling, sparse interface -------------------------------------------------------------


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_precomputed_kneighbors_classifier_matches_the_exact_classifier(metric):
    rng = np.random.default_rng(0)
    X, y = data(), rng.integers(0, 3, 300)
    queries = data(60, seed=4)
    pipeline = make_pipeline(
        HNSWTransformer(n_neighbors=10, metric=metric, random_state=0),
        KNeighborsClassifier(10, metric="precomputed"),
    ).fit(X, y)
    exact = KNeighborsClassifier(10, metric=metric, algorithm="brute").fit(X, y)
    np.testing.assert_array_equal(pipeline.predict(queries), exact.predict(queries))
    np.testing.assert_allclose(pipeline.predict_proba(queries), exact.predict_proba(queries), atol=1e-12)


@pytest.mark.parametrize("dumps, loads", [(pickle.dumps, pickle.loads), (None, None)])
def test_pickle_keeps_the_index_and_ef(dumps, loads, tmp_path):
    X = data(dtype=np.float32)
    model = HNSWTransformer(n_neighbors=4, metric="cosine", ef=37, M=8, random_state=0).fit(X)
    if dumps is None:
        joblib.dump(model, tmp_path / "model.joblib")
        restored = joblib.load(tmp_path / "model.joblib")
    else:
        restored = loads(dumps(model))
    assert restored.index_.ef == 37 and restored.index_.M == 8 and restored.n_samples_fit_ == 300
    assert (restored.transform(X) != model.transform(X)).nnz == 0
    restored.partial_fit(data(10, seed=8, dtype=np.float32))  # still a live, growable index
    assert restored.n_samples_fit_ == 310


def test_sparse_interface_config_gives_csr_arrays():
    model = HNSWTransformer(random_state=0).fit(data())
    with sklearn.config_context(sparse_interface="sparray"):
        assert isinstance(model.transform(data(4, seed=2)), sp.csr_array)
    assert isinstance(model.transform(data(4, seed=2)), sp.csr_matrix)


# -- bad input ------------------------------------------------------------------------------------------


def test_k_larger_than_the_index_is_a_clear_error():
    model = HNSWTransformer(n_neighbors=5).fit(data(5))
    with pytest.raises(ValueError, match="n_neighbors = 6, n_samples_fit = 5"):
        model.transform(data(3))  # distance mode asks for n_neighbors + 1
    with pytest.raises(ValueError, match="n_neighbors = 9, n_samples_fit = 5"):
        model.kneighbors(data(3), 9)
    with pytest.raises(ValueError, match="n_neighbors < n_samples_fit"):
        model.kneighbors(None, 5)
    assert model.kneighbors(data(3), 5)[1].shape == (3, 5)


def test_nan_rows_are_named():
    X = data()
    X[123, 4] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity in row 123"):
        HNSWTransformer().fit(X)
    model = HNSWTransformer().fit(data())
    with pytest.raises(ValueError, match="row 123"):
        model.transform(X)
    with pytest.raises(ValueError, match="row 123"):
        model.partial_fit(X)


def test_wrong_dimension_and_empty_input_are_clear_errors():
    model = HNSWTransformer().fit(data(d=12))
    with pytest.raises(ValueError, match="X has 7 features, but HNSWTransformer is expecting 12"):
        model.transform(data(d=7))
    with pytest.raises(ValueError, match="X has 7 features"):
        model.partial_fit(data(d=7))
    with pytest.raises(ValueError, match="0 sample"):
        HNSWTransformer().fit(np.empty((0, 3)))
    with pytest.raises(ValueError, match="0 sample"):
        model.transform(np.empty((0, 12)))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"metric": "manhattan"}, "'metric' parameter of HNSWTransformer must be a str among"),
        ({"mode": "weights"}, "'mode' parameter of HNSWTransformer must be a str among"),
        ({"n_neighbors": 0}, "'n_neighbors' parameter of HNSWTransformer must be an int in the range"),
        ({"M": 1.5}, "'M' parameter of HNSWTransformer must be an int in the range"),
        ({"M": 1}, r"'M' parameter of HNSWTransformer must be an int in the range \[2, inf\)"),
        ({"ef": -1}, "'ef' parameter of HNSWTransformer must be an int in the range"),
        ({"ef_construction": 0}, "'ef_construction' parameter"),
        ({"batch_size": 0}, "'batch_size' parameter"),
        ({"n_jobs": 0}, "'n_jobs' parameter of HNSWTransformer must be None, an int in the range"),
        ({"n_jobs": True}, "'n_jobs' parameter"),
    ],
)
def test_bad_parameters_are_named(params, message):
    with pytest.raises(ValueError, match=message):
        HNSWTransformer(**params).fit(data())


def test_parameters_set_after_fit_are_checked_when_searching():
    model = HNSWTransformer(n_neighbors=3, random_state=0).fit(data())
    model.set_params(ef=0)
    with pytest.raises(ValueError, match="'ef' parameter"):
        model.kneighbors(data(5, seed=1))
    with pytest.raises(ValueError, match="'ef' parameter"):
        model.transform(data(5, seed=1))


@pytest.mark.parametrize("value", [1e39, -1e39, np.inf])
def test_a_value_beyond_float32_is_refused_with_its_row(value):
    X = data(dtype=np.float64)
    X[7, 3] = value
    message = (
        r"beyond float32's range \(3.4e38\) in row 7 \(-?1e\+39\)" if np.isfinite(value) else r"row 7 \(value inf\)"
    )
    with pytest.raises(ValueError, match=message):
        HNSWTransformer(random_state=0).fit(X)
    fitted = HNSWTransformer(random_state=0).fit(data(dtype=np.float64))
    with pytest.raises(ValueError, match=message):
        fitted.kneighbors(X)


def test_neighbours_and_protocols_do_not_import_torch():
    # next to a million-point index, torch's ~0.5 GB of resident memory would dominate the overhead
    code = "import sys; from skfungi import HNSWTransformer; import skfungi.protocols; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_save_and_load_give_the_same_index_without_pickle(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(300, 8)).astype(np.float32), columns=[f"f{i}" for i in range(8)])
    fitted = HNSWTransformer(n_neighbors=4, metric="cosine", M=8, ef=30, random_state=np.random.RandomState(0)).fit(X)
    fitted.save(tmp_path / "index")
    assert sorted(path.name for path in (tmp_path / "index").iterdir()) == ["hnsw.bin", "hnsw.json"]
    loaded = HNSWTransformer.load(tmp_path / "index")
    assert loaded.get_params() == {**fitted.get_params(), "random_state": None}  # it seeded the saved graph
    assert (loaded.n_samples_fit_, loaded.n_features_in_) == (300, 8)
    assert loaded.feature_names_in_.tolist() == X.columns.tolist()
    queries = X.iloc[:20]
    for found, expected in zip(loaded.kneighbors(queries), fitted.kneighbors(queries), strict=True):
        np.testing.assert_array_equal(found, expected)
    assert (loaded.transform(queries) != fitted.transform(queries)).nnz == 0
    assert loaded.partial_fit(X.iloc[:10]).n_samples_fit_ == 310  # it keeps growing
    with pytest.raises(ValueError, match="holds no saved HNSWTransformer"):
        HNSWTransformer.load(tmp_path)


def damaged_index(tmp_path, damage: str):
    """A saved index (20 rows of 4 features) with one of its files damaged."""
    import json
    import shutil

    rng = np.random.default_rng(0)
    folder = tmp_path / damage
    HNSWTransformer(random_state=0).fit(rng.normal(size=(20, 4))).save(folder)
    if damage == "other width":  # the hnsw.bin of an index of 8 features
        HNSWTransformer(random_state=0).fit(rng.normal(size=(20, 8))).save(tmp_path / "wide")
        shutil.copy(tmp_path / "wide" / "hnsw.bin", folder / "hnsw.bin")
    elif damage == "no hnsw.bin":
        (folder / "hnsw.bin").unlink()
    elif damage == "truncated":
        data = (folder / "hnsw.bin").read_bytes()
        (folder / "hnsw.bin").write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        (folder / "hnsw.bin").write_bytes(b"not an index" * 10)
    elif damage == "json list":
        (folder / "hnsw.json").write_text("[1, 2]")
    elif damage == "json keys":
        (folder / "hnsw.json").write_text('{"format": 1}')
    elif damage == "json params":
        described = json.loads((folder / "hnsw.json").read_text())
        (folder / "hnsw.json").write_text(json.dumps({**described, "params": {"n_clusters": 3}}))
    return folder


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("other width", "hnsw.bin' holds vectors of 8 features, but hnsw.json says 4"),
        ("no hnsw.bin", "cannot read the index file '.*hnsw.bin'"),
        ("truncated", "hnsw.bin' is not an hnswlib index that can be read"),
        ("garbage", "hnsw.bin' is not an hnswlib index"),
        ("json list", "hnsw.json' holds format 'list', not 1"),
        ("json keys", "hnsw.json' lacks params, n_samples_fit"),
        ("json params", "hnsw.json' holds other parameters"),
    ],
)
def test_a_damaged_saved_index_is_refused_naming_its_file(tmp_path, damage, message):
    """An hnsw.bin of another width loaded without a word and answered with distances over the wrong bytes; a
    missing or damaged one raised hnswlib's 'Cannot open file' / 'Index seems to be corrupted', a JSON of
    another shape an AttributeError or KeyError, none naming the file."""
    folder = damaged_index(tmp_path, damage)
    with pytest.raises(ValueError, match=message):
        HNSWTransformer.load(folder)


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "ip"])
def test_rows_whose_float32_distances_overflow_are_refused_with_their_row(metric):
    """Found by an audit: rows of norm ~1e30 (finite in float32) gave infinite squared distances in hnswlib,
    and neighbours in no order, without an error."""
    X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    X[7] *= 1e30
    with pytest.raises(ValueError, match=r"row 7 has norm .* overflow to infinity"):
        HNSWTransformer(n_neighbors=3, metric=metric).fit(X)
    fitted = HNSWTransformer(n_neighbors=3, metric=metric).fit(X[:7])
    with pytest.raises(ValueError, match=r"row 0 has norm"):
        fitted.transform(X[7:8])
    HNSWTransformer(n_neighbors=3, metric=metric).fit(X * 1e-30)  # small norms are fine


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_float64_rows_that_float32_cannot_tell_apart_are_refused(metric):
    """Found by an audit: 1e8 + noise in float64 became equal rows in hnswlib's float32 copy: every distance
    0 (or equal), neighbours in no order. Centred, the same rows index correctly."""
    rng = np.random.default_rng(0)
    X = 1e8 + rng.normal(size=(80, 5))
    with pytest.raises(ValueError, match=r"differ by less than float32 can hold.*Center the rows first"):
        HNSWTransformer(n_neighbors=5, metric=metric).fit(X)
    centred = X - X.mean(axis=0)
    graph = HNSWTransformer(n_neighbors=5, metric=metric).fit_transform(centred)
    exact = KNeighborsTransformer(n_neighbors=5, metric=metric, mode="distance").fit_transform(centred)
    assert (graph.indices == exact.indices).mean() > 0.95
