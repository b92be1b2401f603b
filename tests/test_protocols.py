"""Downstream protocols (kNN, linear probe, k-means, retrieval) and grid searches on FUNGI features."""

from __future__ import annotations

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import tiny_vit
from sklearn.datasets import make_blobs
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, average_precision_score, balanced_accuracy_score
from sklearn.model_selection import GridSearchCV, PredefinedSplit
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from skfungi import DINOLoss, FungiTransformer, SimCLRLoss
from skfungi.protocols import (
    PAPER_L2_PENALTIES,
    CappedPCA,
    FungiBlockSelector,
    LinearProbeClassifier,
    TemperatureWeights,
    evaluate_few_shot_knn,
    evaluate_kmeans,
    evaluate_knn,
    evaluate_linear_probe,
    few_shot_indices,
    make_knn_classifier,
    make_linear_probe,
    retrieval_average_precision,
    retrieval_map,
)

LOSSES = {"kl": "kl", "dino": DINOLoss(latent_dim=32), "simclr": SimCLRLoss(grid_size=3, latent_dim=16)}
ALL_BLOCKS = ("embedding", "kl", "dino", "simclr")


def blobs(n=240, n_features=30, centers=4, seed=0, spread=4.0):
    return make_blobs(n, n_features=n_features, centers=centers, cluster_std=spread, random_state=seed)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, size=(6, 20, 20, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def all_features(images):
    fungi = FungiTransformer(tiny_vit(), losses=tuple(LOSSES.values()), random_state=0)
    return fungi.set_output(transform="pandas").fit_transform(images)


@parametrize_with_checks([CappedPCA(n_components=3), LinearProbeClassifier(l2_penalty=0.1)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


# -- block selection: the loss set searched for the price of one extraction ---------------------


@pytest.mark.parametrize("losses", [("kl", "simclr"), ("dino",)])
def test_selected_blocks_equal_an_extraction_with_only_those_losses(losses, images, all_features):
    alone = FungiTransformer(tiny_vit(), losses=tuple(LOSSES[name] for name in losses), random_state=0)
    expected = alone.fit_transform(images)
    selector = FungiBlockSelector(blocks=("embedding", *losses)).fit(all_features)
    np.testing.assert_allclose(selector.transform(all_features), expected, rtol=1e-5, atol=1e-6)  # batched matmuls
    np.testing.assert_array_equal(selector.get_feature_names_out(), alone.get_feature_names_out())


def test_grid_over_blocks_extracts_each_image_once(images, extracted_rows):
    fungi = FungiTransformer(tiny_vit(), losses=tuple(LOSSES.values()), random_state=0)
    features = fungi.set_output(transform="pandas").fit_transform(images)
    y = np.arange(len(images)) % 2
    candidates = [("embedding", "kl"), ("embedding", "kl", "dino"), ALL_BLOCKS]
    search = GridSearchCV(
        make_pipeline(FungiBlockSelector(), CappedPCA(), KNeighborsClassifier(1)),
        {"fungiblockselector__blocks": candidates},
        cv=3,
    ).fit(features, y)
    assert extracted_rows["rows"] == len(images)  # once, for the whole search
    assert search.best_params_["fungiblockselector__blocks"] in candidates
    assert len(search.cv_results_["params"]) == 3


def test_selector_on_plain_arrays_with_feature_names(all_features):
    array = all_features.to_numpy()
    selector = FungiBlockSelector("dino", feature_names=all_features.columns).fit(array)
    np.testing.assert_array_equal(selector.transform(array), all_features.filter(like="dino").to_numpy())
    assert selector.columns_.tolist() == list(range(24, 36)) and list(selector.blocks_) == list(ALL_BLOCKS)
    reordered = FungiBlockSelector(("kl", "embedding"), feature_names=all_features.columns).fit_transform(array)
    np.testing.assert_array_equal(reordered[:, :12], array[:, 12:24])


def test_selector_inside_a_pipeline_after_the_transformer(images):
    fungi = FungiTransformer(tiny_vit(), losses=("kl", LOSSES["dino"]), random_state=0).set_output(transform="pandas")
    pipe = make_pipeline(fungi, FungiBlockSelector(("embedding", "dino")), KNeighborsClassifier(1))
    y = np.arange(len(images)) % 3
    assert (pipe.fit(images, y).predict(images) == y).all()  # 1-NN of a training image is itself
    assert pipe[1].get_feature_names_out()[12] == "dino0"
    pipe.set_output(transform="pandas")
    assert list(pipe[:-1].transform(images[:2]).columns[:2]) == ["embedding0", "embedding1"]


@pytest.mark.parametrize(
    "selector, X, message",
    [
        (FungiBlockSelector(), np.zeros((2, 4)), "needs column names"),
        (FungiBlockSelector(("kl", "dino")), pd.DataFrame(np.zeros((2, 2)), columns=["kl0", "kl1"]), r"\['dino'\]"),
        (FungiBlockSelector(("kl", "kl"), feature_names=["kl0"]), np.zeros((2, 1)), "more than once"),
        (FungiBlockSelector(()), np.zeros((2, 1)), "non-empty"),
        (FungiBlockSelector("kl", feature_names=["kl0"]), np.zeros((2, 3)), "1 names but X has 3 columns"),
        (FungiBlockSelector("kl"), pd.DataFrame(np.zeros((2, 1)), columns=["kl"]), "'<block><number>'"),
    ],
)
def test_selector_errors_name_the_problem(selector, X, message):
    with pytest.raises(ValueError, match=message):
        selector.fit(X)


# -- downstream grid search on features extracted once, with a pipeline cache -------------------------


def test_downstream_grid_with_pipeline_memory_matches_the_uncached_grid(tmp_path):
    X, y = blobs(n_features=40)
    grid = {"pca__n_components": [5, 20], "knn__n_neighbors": [5, 20]}
    cached = GridSearchCV(make_knn_classifier(memory=joblib.Memory(tmp_path, verbose=0)), grid, cv=3).fit(X, y)
    plain = GridSearchCV(make_knn_classifier(), grid, cv=3).fit(X, y)
    np.testing.assert_array_equal(cached.cv_results_["mean_test_score"], plain.cv_results_["mean_test_score"])
    assert any(tmp_path.rglob("output.pkl"))  # the PCA fits were cached


# -- kNN ---------------------------------------------------------------------------------------------------


def test_knn_protocol_is_capped_pca_then_a_uniform_euclidean_vote():
    X, y = blobs()
    train, test = slice(0, 160), slice(160, None)
    model = make_knn_classifier(20, n_components=10).fit(X[train], y[train])
    reduced = PCA(10, svd_solver="full").fit(X[train])
    manual = KNeighborsClassifier(20).fit(reduced.transform(X[train]), y[train])
    np.testing.assert_array_equal(model.predict(X[test]), manual.predict(reduced.transform(X[test])))
    scores = evaluate_knn(X[train], y[train], X[test], y[test], n_components=10)
    predicted = model.predict(X[test])
    assert scores == {
        "top1": accuracy_score(y[test], predicted),
        "mean_per_class": balanced_accuracy_score(y[test], predicted),
    }


def test_temperature_vote_is_dinos_weighted_cosine_vote():
    X, y = blobs(spread=8.0, seed=1)
    train, test = slice(0, 180), slice(180, None)
    model = make_knn_classifier(10, n_components=None, vote="temperature").fit(X[train], y[train])
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    similarity = unit[test] @ unit[train].T
    nearest = np.argsort(-similarity, axis=1)[:, :10]
    votes = np.zeros((60, 4))
    for row, neighbours in enumerate(nearest):
        np.add.at(votes[row], y[train][neighbours], np.exp(similarity[row, neighbours] / 0.07))
    np.testing.assert_allclose(model.predict_proba(X[test]), votes / votes.sum(1, keepdims=True), atol=1e-9)
    np.testing.assert_allclose(TemperatureWeights(0.5)(np.array([1.0])), np.exp(-2.0))


@pytest.mark.parametrize("vote", ["uniform", "temperature"])
def test_hnsw_neighbours_give_the_exact_protocols_predictions(vote):
    X, y = blobs()
    exact = make_knn_classifier(vote=vote).fit(X[:200], y[:200])
    approximate = make_knn_classifier(vote=vote, neighbors="hnsw", hnsw_params={"random_state": 0})
    approximate.fit(X[:200], y[:200])
    assert list(approximate.named_steps) == ["pca", "hnsw", "knn"]
    np.testing.assert_allclose(approximate.predict_proba(X[200:]), exact.predict_proba(X[200:]), atol=1e-6)


def test_capped_pca_keeps_every_direction_so_neighbours_do_not_change():
    X, y = blobs(n=60, n_features=100)
    model = CappedPCA(512).fit(X[:40])
    assert model.n_components_ == 40 and model.get_feature_names_out()[0] == "cappedpca0"
    raw = KNeighborsClassifier(5).fit(X[:40], y[:40]).kneighbors(X[40:], return_distance=False)
    reduced = KNeighborsClassifier(5).fit(model.transform(X[:40]), y[:40])
    np.testing.assert_array_equal(reduced.kneighbors(model.transform(X[40:]), return_distance=False), raw)


def test_few_shot_takes_the_first_samples_of_each_class_in_order():
    labels = np.array([2, 0, 2, 1, 0, 2, 0, 1, 1, 2])
    expected = []
    for label in (0, 1, 2):  # a plain loop over the classes
        expected += [i for i in range(len(labels)) if labels[i] == label][:2]
    np.testing.assert_array_equal(few_shot_indices(labels, 2), sorted(expected))
    np.testing.assert_array_equal(few_shot_indices(labels, 10), np.arange(10))  # fewer samples than shots: all
    with pytest.raises(ValueError, match="shots must be a positive int"):
        few_shot_indices(labels, 0)


@pytest.mark.parametrize("shots", [1, 3, 25])
def test_few_shot_knn_is_a_k_min_20_shots_vote_among_the_first_samples_per_class(shots):
    X, y = blobs(n=300, n_features=40, spread=6.0, seed=2)
    train, test = slice(0, 200), slice(200, None)
    few = [i for i in range(200) if list(y[:i]).count(y[i]) < shots]  # first `shots` of each class, plainly
    # The capped PCA keeps every direction of the few samples: the neighbours of the raw features.
    plain = KNeighborsClassifier(min(20, shots)).fit(X[few], y[few]).predict(X[test])
    scores = evaluate_few_shot_knn(X[train], y[train], X[test], y[test], shots)
    assert scores == {
        "top1": accuracy_score(y[test], plain),
        "mean_per_class": balanced_accuracy_score(y[test], plain),
    }


def test_few_shot_vote_is_never_a_majority_of_the_whole_training_set():
    # 2 classes x 5 shots: with k = 10 every test sample would get the same vote; with k = 5 it depends on it.
    labels = np.repeat([0, 1], 5)
    train = np.concatenate([np.zeros((5, 2)), np.ones((5, 2))]) + np.linspace(0, 0.1, 10)[:, None]
    test = np.array([[0.0, 0.0], [1.0, 1.0]])
    scores = evaluate_few_shot_knn(train, labels, test, np.array([0, 1]), shots=5, n_components=None)
    assert scores["top1"] == 1.0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: make_knn_classifier(vote="softmax"), "vote must be"),
        (lambda: make_knn_classifier(neighbors="faiss"), "neighbors must be"),
        (lambda: make_knn_classifier(0), "n_neighbors must be a positive int"),
        (lambda: TemperatureWeights(0), "temperature must be a positive number"),
        (lambda: CappedPCA(0).fit(np.ones((3, 2))), "n_components must be a positive int"),
        (lambda: LinearProbeClassifier(-1).fit(np.ones((4, 2)), [0, 1, 0, 1]), "l2_penalty must be a positive"),
        (lambda: make_linear_probe(l2_penalties=[]), "l2_penalties is empty"),
    ],
)
def test_protocol_parameter_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- linear probe -------------------------------------------------------------------------------------


def test_linear_probe_lambda_maps_to_c_and_solves_the_papers_objective():
    X, y = blobs(n=150, n_features=8, centers=3, spread=6.0)
    X = X / 10
    probe = LinearProbeClassifier(l2_penalty=1e-2, tol=1e-10, max_iter=10_000).fit(X, y)
    assert probe.C_ == pytest.approx(1 / (1e-2 * 150))
    reference = LogisticRegression(C=probe.C_, fit_intercept=False, tol=1e-10, max_iter=10_000).fit(X, y)
    np.testing.assert_allclose(probe.coef_, reference.coef_, rtol=1e-6, atol=1e-8)
    assert probe.logistic_regression_.intercept_.tolist() == [0.0, 0.0, 0.0]
    # Stationarity of mean log-loss + lambda / 2 * ||W||^2:  X^T (P - Y) / n + lambda W = 0.
    onehot = np.eye(3)[y]
    gradient = X.T @ (probe.predict_proba(X) - onehot) / len(X) + 1e-2 * probe.coef_.T
    np.testing.assert_allclose(gradient, 0, atol=1e-7)


def test_linear_probe_sweeps_on_a_validation_split_then_refits_on_everything():
    X, y = blobs(n=200, n_features=20, spread=8.0)
    search = make_linear_probe(validation_size=0.25, n_components=10, random_state=0).fit(X, y)
    assert list(search.cv_results_["param_probe__l2_penalty"]) == list(PAPER_L2_PENALTIES)
    assert PAPER_L2_PENALTIES == pytest.approx((5e-6, 1.2875e-4, 2.525e-4, 3.7625e-4, 5e-4))
    best = search.best_params_["probe__l2_penalty"]
    refit = search.best_estimator_
    assert refit.named_steps["probe"].C_ == pytest.approx(1 / (best * 200))  # refit on all 200 samples
    assert refit.named_steps["pca"].n_components_ == 10
    train, validation = next(search.cv.split(X, y))
    assert len(validation) == 50 and sorted(np.bincount(y[validation])) == [12, 12, 13, 13]
    fold = make_pipeline(CappedPCA(10), LinearProbeClassifier(best)).fit(X[train], y[train])
    assert search.best_score_ == pytest.approx(fold.score(X[validation], y[validation]))


def test_linear_probe_with_a_given_validation_set_and_evaluation():
    X, y = blobs(n=200, n_features=20)
    split = PredefinedSplit([-1] * 150 + [0] * 50)
    search = make_linear_probe(cv=split, n_components=None, l2_penalties=[1e-4, 1e-2]).fit(X, y)
    assert search.best_estimator_.named_steps["probe"].n_features_in_ == 20
    scores = evaluate_linear_probe(X[:160], y[:160], X[160:], y[160:], n_components=8, random_state=0)
    assert set(scores) == {"top1", "mean_per_class", "l2_penalty"} and scores["top1"] > 0.9


# -- k-means --------------------------------------------------------------------------------------------


def test_kmeans_scores_are_one_on_separated_clusters_and_match_sklearn():
    X, y = blobs(spread=0.5)
    assert evaluate_kmeans(X, y, random_state=0) == {"ami": 1.0, "ari": 1.0}
    X, y = blobs(spread=12.0)
    scores = evaluate_kmeans(X, y, n_components=None, random_state=0)
    assert 0 < scores["ami"] < 1 and 0 < scores["ari"] < 1
    assert evaluate_kmeans(X, y, n_components=None, random_state=0) == scores
    with pytest.raises(ValueError, match="labels has shape"):
        evaluate_kmeans(X, y[:-1])


# -- retrieval ------------------------------------------------------------------------------------------------


def revisited_oxford_ap(ranks, n_relevant):
    """compute_ap of the revisited Oxford/Paris evaluation code (0-based ranks of the positives)."""
    ap, step = 0.0, 1.0 / n_relevant
    for j, rank in enumerate(ranks):
        precision_0 = 1.0 if rank == 0 else j / rank
        ap += (precision_0 + (j + 1) / (rank + 1)) * step / 2
    return ap


def retrieval_problem(seed=0):
    rng = np.random.default_rng(seed)
    queries, database = rng.normal(size=(15, 6)), rng.normal(size=(80, 6))
    relevance = rng.random((15, 80)) < 0.15
    relevance[:, 0] = True  # every query has an answer
    return queries, database, relevance


def test_average_precision_matches_scikit_learn_per_query():
    queries, database, relevance = retrieval_problem()
    ap = retrieval_average_precision(queries, database, relevance, batch_size=4)
    scores = queries @ database.T
    expected = [average_precision_score(relevance[q], scores[q]) for q in range(15)]
    np.testing.assert_allclose(ap, expected, atol=1e-12)
    assert retrieval_map(queries, database, relevance) == pytest.approx(np.mean(expected))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_other_similarities_rank_like_their_definition(metric):
    queries, database, relevance = retrieval_problem(1)
    if metric == "cosine":
        unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
        scores = unit(queries) @ unit(database).T
    else:
        scores = -np.linalg.norm(queries[:, None] - database[None], axis=2)
    expected = [average_precision_score(relevance[q], scores[q]) for q in range(15)]
    np.testing.assert_allclose(
        retrieval_average_precision(queries, database, relevance, metric=metric), expected, atol=1e-12
    )


def test_trapezoid_interpolation_and_junk_follow_the_revisited_oxford_code():
    queries, database, relevance = retrieval_problem(2)
    rng = np.random.default_rng(3)
    junk = (rng.random((15, 80)) < 0.1) & ~relevance
    ap = retrieval_average_precision(
        queries, database, sp.csr_matrix(relevance), ignore=junk, interpolation="trapezoid"
    )
    for q in range(15):
        order = np.argsort(-(queries[q] @ database.T), kind="stable")
        order = order[~junk[q][order]]  # junk images leave the ranking
        ranks = np.flatnonzero(relevance[q][order])
        assert ap[q] == pytest.approx(revisited_oxford_ap(ranks, relevance[q].sum()))


def test_queries_without_answers_are_left_out_with_a_warning_and_bad_shapes_are_named():
    queries, database, relevance = retrieval_problem()
    relevance[3] = False
    ap = retrieval_average_precision(queries, database, relevance)
    assert np.isnan(ap[3]) and not np.isnan(np.delete(ap, 3)).any()
    with pytest.warns(UserWarning, match="1 of 15 queries have no relevant"):
        assert retrieval_map(queries, database, relevance) == pytest.approx(np.nanmean(ap))
    with pytest.raises(ValueError, match="No query has a relevant"):
        retrieval_map(queries, database, np.zeros_like(relevance))
    with pytest.raises(ValueError, match=r"relevance has shape \(15, 79\)"):
        retrieval_map(queries, database, relevance[:, 1:])
    with pytest.raises(ValueError, match="query_features has 6 features but database_features has 5"):
        retrieval_map(queries, database[:, :5], relevance)
    with pytest.raises(ValueError, match="relevance must be boolean"):
        retrieval_map(queries, database, relevance * 2.5)
