"""The paper's downstream protocols on FUNGI features: kNN, linear probe, k-means, retrieval.

Everything here is plain scikit-learn underneath; the helpers only fix the
paper's settings (SPEC section 6) so that results are comparable:

* **PCA**: full-SVD PCA fit on the training features, to
  ``min(512, n_features, n_train)`` dimensions (:class:`CappedPCA`); no
  renormalisation afterwards.
* **kNN** (:func:`make_knn_classifier`, :func:`evaluate_knn`): k = 20,
  uniform vote, Euclidean distance on the PCA features; top-1 accuracy and
  mean-per-class accuracy (scikit-learn's ``balanced_accuracy_score``). The
  DINO-style vote (cosine similarity, weights ``exp(sim / 0.07)``) is
  ``vote="temperature"``; ``neighbors="hnsw"`` swaps the exact search for
  :class:`~skfungi.neighbors.HNSWTransformer`.
* **Linear probe** (:class:`LinearProbeClassifier`, :func:`make_linear_probe`):
  multinomial logistic regression, L2, no intercept, the L2 strength
  ``lambda`` swept over ``linspace(5e-6, 5e-4, 5)`` on a validation split,
  then refit on train + validation.
* **k-means** (:func:`evaluate_kmeans`): as many clusters as classes,
  adjusted mutual information and adjusted Rand index.
* **Retrieval** (:func:`retrieval_map`): mean average precision of a ranking
  by inner product on the PCA features.

:class:`~skfungi.FungiBlockSelector` (re-exported here) picks blocks of
features extracted once, to search the loss set cheaply.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    adjusted_mutual_info_score,
    adjusted_rand_score,
    balanced_accuracy_score,
)
from sklearn.model_selection import GridSearchCV, StratifiedShuffleSplit
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ..neighbors import HNSWTransformer
from .blocks import FungiBlockSelector, feature_blocks

__all__ = [
    "PAPER_L2_PENALTIES",
    "CappedPCA",
    "FungiBlockSelector",
    "LinearProbeClassifier",
    "TemperatureWeights",
    "evaluate_kmeans",
    "evaluate_knn",
    "evaluate_linear_probe",
    "feature_blocks",
    "make_knn_classifier",
    "make_linear_probe",
    "retrieval_average_precision",
    "retrieval_map",
]

#: The paper's sweep of the linear probe's L2 strength ``lambda``.
PAPER_L2_PENALTIES: tuple[float, ...] = tuple(float(value) for value in np.linspace(5e-6, 5e-4, 5))


# -- PCA ------------------------------------------------------------------------------


class CappedPCA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """PCA to at most ``n_components`` dimensions: ``min(n_components, n_features, n_samples)``.

    The paper reduces every feature set to 512 dimensions with a full-SVD PCA
    fit on the training features; with fewer training samples (few-shot, a
    cross-validation fold) or features than that, plain ``PCA(512)`` fails.
    Keeping ``min(n_features, n_samples)`` components keeps every direction of
    the centred training data, so Euclidean neighbours are those of the
    unreduced features ("PCA skipped" in the paper's few-shot runs).

    Parameters
    ----------
    n_components : int, default=512
        Upper bound on the number of components.
    svd_solver : str, default="full"
        Passed to :class:`sklearn.decomposition.PCA` (the paper: full SVD).
    whiten : bool, default=False
    random_state : int, RandomState instance or None, default=None
        For the randomised solvers only.

    Attributes
    ----------
    pca_ : sklearn.decomposition.PCA
        The fitted PCA.
    n_components_ : int
        Components kept.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from skfungi.protocols import CappedPCA
    >>> X = np.random.default_rng(0).normal(size=(40, 100))
    >>> CappedPCA(512).fit_transform(X).shape
    (40, 40)
    """

    def __init__(self, n_components=512, *, svd_solver="full", whiten=False, random_state=None):
        self.n_components = n_components
        self.svd_solver = svd_solver
        self.whiten = whiten
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def fit(self, X, y=None):
        """Fit the PCA on ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self : CappedPCA
        """
        _check_positive_int("n_components", self.n_components)
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        n_components = min(int(self.n_components), X.shape[0], X.shape[1])
        self.pca_ = PCA(
            n_components, svd_solver=self.svd_solver, whiten=self.whiten, random_state=self.random_state
        ).fit(X)
        self.n_components_ = self.pca_.n_components_
        self._n_features_out = self.n_components_
        return self

    def transform(self, X):
        """Project ``X`` on the principal components.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components_)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return self.pca_.transform(X)


# -- kNN ----------------------------------------------------------------------------


class TemperatureWeights:
    """DINO's kNN vote weights for cosine distances: ``exp(sim / T)``, as ``exp(-(1 - sim) / T)``.

    A picklable callable for ``KNeighborsClassifier(weights=...)`` with
    ``metric="cosine"`` (or ``"precomputed"`` cosine graphs). Dividing every
    weight by ``exp(1 / T)`` changes no vote and cannot overflow.

    Parameters
    ----------
    temperature : float, default=0.07

    Examples
    --------
    >>> import numpy as np
    >>> from skfungi.protocols import TemperatureWeights
    >>> TemperatureWeights(0.07)(np.array([[0.0, 0.07]])).round(4)
    array([[1.    , 0.3679]])
    """

    def __init__(self, temperature: float = 0.07):
        if not isinstance(temperature, numbers.Real) or not temperature > 0:
            raise ValueError(f"temperature must be a positive number, got {temperature!r}.")
        self.temperature = float(temperature)

    def __call__(self, distances: np.ndarray) -> np.ndarray:
        return np.exp(-np.asarray(distances, dtype=np.float64) / self.temperature)

    def __repr__(self) -> str:
        return f"TemperatureWeights(temperature={self.temperature!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, TemperatureWeights) and other.temperature == self.temperature

    def __hash__(self) -> int:
        return hash((TemperatureWeights, self.temperature))


def make_knn_classifier(
    n_neighbors: int = 20,
    *,
    n_components: int | None = 512,
    vote: str = "uniform",
    temperature: float = 0.07,
    neighbors: str = "exact",
    hnsw_params: dict | None = None,
    memory=None,
) -> Pipeline:
    """The paper's kNN classifier: ``CappedPCA(512)`` then a 20-nearest-neighbour vote.

    Parameters
    ----------
    n_neighbors : int, default=20
        Neighbours that vote.
    n_components : int or None, default=512
        PCA dimensions (capped by the data, see :class:`CappedPCA`); ``None``
        skips the PCA.
    vote : {"uniform", "temperature"}, default="uniform"
        ``"uniform"``: one vote per neighbour, Euclidean distance (the paper).
        ``"temperature"``: DINO's vote, cosine similarity with weights
        ``exp(sim / temperature)``.
    temperature : float, default=0.07
        Temperature of ``vote="temperature"``.
    neighbors : {"exact", "hnsw"}, default="exact"
        ``"exact"``: brute-force search inside ``KNeighborsClassifier``.
        ``"hnsw"``: an :class:`~skfungi.neighbors.HNSWTransformer` step
        (approximate, for large training sets) feeding
        ``KNeighborsClassifier(metric="precomputed")``.
    hnsw_params : dict or None, default=None
        Extra parameters of the ``HNSWTransformer`` step (``M``, ``ef``,
        ``n_jobs``, ``random_state``, ...).
    memory : str, joblib.Memory or None, default=None
        Pipeline cache: in a grid search over ``knn__n_neighbors`` it reuses
        the fitted PCA (and HNSW index) across candidates.

    Returns
    -------
    pipeline : sklearn.pipeline.Pipeline
        Steps ``pca`` (unless ``n_components=None``), ``hnsw`` (with
        ``neighbors="hnsw"``) and ``knn``. With ``"hnsw"``, grid-search
        ``knn__n_neighbors`` up to ``hnsw__n_neighbors`` only.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skfungi.protocols import make_knn_classifier
    >>> X, y = load_digits(return_X_y=True)
    >>> model = make_knn_classifier().fit(X[:1000], y[:1000])
    >>> list(model.named_steps), model.named_steps["pca"].n_components_
    (['pca', 'knn'], 64)
    >>> round(model.score(X[1000:], y[1000:]), 3)
    0.946
    """
    _check_positive_int("n_neighbors", n_neighbors)
    if vote == "uniform":
        metric, weights = "euclidean", "uniform"
    elif vote == "temperature":
        metric, weights = "cosine", TemperatureWeights(temperature)
    else:
        raise ValueError(f"vote must be 'uniform' or 'temperature', got {vote!r}.")
    steps = [] if n_components is None else [("pca", CappedPCA(n_components))]
    if neighbors == "exact":
        steps.append(("knn", KNeighborsClassifier(n_neighbors, weights=weights, metric=metric, algorithm="brute")))
    elif neighbors == "hnsw":
        params = {"n_neighbors": n_neighbors, "metric": metric, **(hnsw_params or {})}
        steps.append(("hnsw", HNSWTransformer(**params)))
        steps.append(("knn", KNeighborsClassifier(n_neighbors, weights=weights, metric="precomputed")))
    else:
        raise ValueError(f"neighbors must be 'exact' or 'hnsw', got {neighbors!r}.")
    return Pipeline(steps, memory=memory)


def evaluate_knn(
    train_features,
    train_labels,
    test_features,
    test_labels,
    *,
    n_neighbors: int = 20,
    n_components: int | None = 512,
    vote: str = "uniform",
    temperature: float = 0.07,
    neighbors: str = "exact",
    hnsw_params: dict | None = None,
) -> dict[str, float]:
    """Top-1 and mean-per-class accuracy of the paper's kNN protocol.

    Parameters
    ----------
    train_features, test_features : array-like of shape (n, n_features)
    train_labels, test_labels : array-like of shape (n,)
    n_neighbors, n_components, vote, temperature, neighbors, hnsw_params
        As in :func:`make_knn_classifier`.

    Returns
    -------
    scores : dict
        ``{"top1": accuracy, "mean_per_class": mean of per-class recalls}``,
        as fractions in [0, 1].

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skfungi.protocols import evaluate_knn
    >>> X, y = load_digits(return_X_y=True)
    >>> {name: round(value, 3) for name, value in evaluate_knn(X[:1000], y[:1000], X[1000:], y[1000:]).items()}
    {'top1': 0.946, 'mean_per_class': 0.945}
    """
    model = make_knn_classifier(
        n_neighbors,
        n_components=n_components,
        vote=vote,
        temperature=temperature,
        neighbors=neighbors,
        hnsw_params=hnsw_params,
    )
    predicted = model.fit(train_features, train_labels).predict(test_features)
    return _classification_scores(test_labels, predicted)


# -- linear probe ---------------------------------------------------------------------


class LinearProbeClassifier(ClassifierMixin, BaseEstimator):
    """Multinomial logistic regression, L2 strength ``lambda``, no intercept (the paper's probe).

    Minimises ``mean_i log_loss_i + (lambda / 2) * ||W||^2``, i.e.
    scikit-learn's ``LogisticRegression(C=1 / (lambda * n_samples),
    fit_intercept=False)``: scikit-learn minimises ``C * sum_i log_loss_i +
    ||W||^2 / 2``, which is the same objective multiplied by ``C * n``.
    ``n_samples`` is that of the data ``fit`` receives (the sum of
    ``sample_weight`` when given, the mean being a weighted mean), so a
    ``lambda`` chosen on a training split means the same regularisation after
    the refit on train + validation.

    Parameters
    ----------
    l2_penalty : float, default=5e-5
        ``lambda``; the paper sweeps :data:`PAPER_L2_PENALTIES`.
    max_iter : int, default=1000
        L-BFGS iterations.
    tol : float, default=1e-4

    Attributes
    ----------
    logistic_regression_ : sklearn.linear_model.LogisticRegression
        The fitted model.
    C_ : float
        ``1 / (l2_penalty * n_samples)``.
    n_iter_ : ndarray
        L-BFGS iterations run.
    classes_ : ndarray
    coef_ : ndarray of shape (n_classes, n_features)
        (``(1, n_features)`` for two classes.)
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from skfungi.protocols import LinearProbeClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> probe = LinearProbeClassifier(l2_penalty=1e-3).fit(X, y)
    >>> round(probe.C_, 4), probe.score(X, y) > 0.9
    (6.6667, True)
    """

    def __init__(self, l2_penalty=5e-5, *, max_iter=1000, tol=1e-4):
        self.l2_penalty = l2_penalty
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X, y, sample_weight=None):
        """Fit the probe.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,) or None

        Returns
        -------
        self : LinearProbeClassifier
        """
        if not isinstance(self.l2_penalty, numbers.Real) or not self.l2_penalty > 0:
            raise ValueError(f"l2_penalty must be a positive number, got {self.l2_penalty!r}.")
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        total_weight = X.shape[0]
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
            if sample_weight.shape != (X.shape[0],):
                raise ValueError(f"sample_weight has shape {sample_weight.shape}, expected ({X.shape[0]},).")
            total_weight = float(sample_weight.sum())
            if not total_weight > 0:
                raise ValueError("Sample weights must contain at least one non-zero number.")
        self.C_ = 1.0 / (float(self.l2_penalty) * total_weight)
        model = LogisticRegression(C=self.C_, fit_intercept=False, max_iter=self.max_iter, tol=self.tol)
        self.logistic_regression_ = model.fit(X, y, sample_weight=sample_weight)
        self.classes_ = model.classes_
        self.coef_ = model.coef_
        self.n_iter_ = model.n_iter_
        return self

    def decision_function(self, X):
        """Class scores ``X @ coef_.T``."""
        X = self._checked(X)
        return self.logistic_regression_.decision_function(X)

    def predict(self, X):
        """Most probable class of each row."""
        X = self._checked(X)
        return self.logistic_regression_.predict(X)

    def predict_proba(self, X):
        """Class probabilities (softmax of the scores)."""
        X = self._checked(X)
        return self.logistic_regression_.predict_proba(X)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`."""
        X = self._checked(X)
        return self.logistic_regression_.predict_log_proba(X)

    def _checked(self, X):
        check_is_fitted(self)
        return validate_data(self, X, dtype=[np.float64, np.float32], reset=False)


def make_linear_probe(
    *,
    l2_penalties: Sequence[float] = PAPER_L2_PENALTIES,
    validation_size: float | int = 0.2,
    cv=None,
    n_components: int | None = 512,
    max_iter: int = 1000,
    scoring: str = "accuracy",
    random_state=None,
    memory=None,
    n_jobs: int | None = None,
) -> GridSearchCV:
    """The paper's linear probe: sweep ``lambda`` on a validation split, refit on everything.

    ``fit(X, y)`` holds out a stratified ``validation_size`` of ``(X, y)``,
    fits ``CappedPCA`` + :class:`LinearProbeClassifier` on the rest for each
    ``lambda``, keeps the best by validation ``scoring``, and refits that
    ``lambda`` (PCA included) on all of ``(X, y)``. To use a given
    validation set, concatenate it after the training set and pass
    ``cv=PredefinedSplit([-1] * n_train + [0] * n_val)``.

    Parameters
    ----------
    l2_penalties : sequence of float, default=PAPER_L2_PENALTIES
        ``lambda`` values (``linspace(5e-6, 5e-4, 5)``).
    validation_size : float or int, default=0.2
        Held-out fraction (or count) of the samples; ignored when ``cv`` is given.
    cv : cross-validation splitter or None, default=None
        Replaces the single stratified split.
    n_components : int or None, default=512
        PCA dimensions (capped by the data); ``None`` skips the PCA. The
        paper uses 384 for ViT-S probes.
    max_iter : int, default=1000
    scoring : str, default="accuracy"
        Validation score (``"balanced_accuracy"`` is mean-per-class accuracy).
    random_state : int, RandomState instance or None, default=None
        Seeds the validation split.
    memory : str, joblib.Memory or None, default=None
        Pipeline cache (reuses the PCA across ``lambda`` values).
    n_jobs : int or None, default=None
        Candidates fitted in parallel.

    Returns
    -------
    search : sklearn.model_selection.GridSearchCV
        After ``fit``: ``best_params_["probe__l2_penalty"]``, ``cv_results_``,
        and ``predict``/``score`` with the refit probe.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skfungi.protocols import make_linear_probe
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> probe = make_linear_probe(random_state=0).fit(X[:300], y[:300])
    >>> probe.best_params_
    {'probe__l2_penalty': 0.0002525}
    >>> round(probe.score(X[1000:], y[1000:]), 3)
    0.895
    """
    l2_penalties = [float(value) for value in l2_penalties]
    if not l2_penalties:
        raise ValueError("l2_penalties is empty.")
    steps = [] if n_components is None else [("pca", CappedPCA(n_components))]
    steps.append(("probe", LinearProbeClassifier(max_iter=max_iter)))
    if cv is None:
        cv = StratifiedShuffleSplit(n_splits=1, test_size=validation_size, random_state=random_state)
    return GridSearchCV(
        Pipeline(steps, memory=memory),
        {"probe__l2_penalty": l2_penalties},
        scoring=scoring,
        cv=cv,
        refit=True,
        n_jobs=n_jobs,
    )


def evaluate_linear_probe(
    train_features,
    train_labels,
    test_features,
    test_labels,
    *,
    l2_penalties: Sequence[float] = PAPER_L2_PENALTIES,
    validation_size: float | int = 0.2,
    n_components: int | None = 512,
    max_iter: int = 1000,
    random_state=None,
) -> dict[str, float]:
    """Top-1 and mean-per-class accuracy of the paper's linear probe, and the chosen ``lambda``.

    Parameters
    ----------
    train_features, test_features : array-like of shape (n, n_features)
    train_labels, test_labels : array-like of shape (n,)
    l2_penalties, validation_size, n_components, max_iter, random_state
        As in :func:`make_linear_probe`.

    Returns
    -------
    scores : dict
        ``{"top1", "mean_per_class", "l2_penalty"}``.
    """
    search = make_linear_probe(
        l2_penalties=l2_penalties,
        validation_size=validation_size,
        n_components=n_components,
        max_iter=max_iter,
        random_state=random_state,
    ).fit(train_features, train_labels)
    scores = _classification_scores(test_labels, search.predict(test_features))
    scores["l2_penalty"] = float(search.best_params_["probe__l2_penalty"])
    return scores


# -- clustering --------------------------------------------------------------------------


def evaluate_kmeans(
    features,
    labels,
    *,
    n_clusters: int | None = None,
    n_components: int | None = 512,
    n_init: int = 10,
    random_state=None,
) -> dict[str, float]:
    """k-means on (PCA-reduced) features, scored against the labels by AMI and ARI.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
        Ground-truth classes (used for scoring only).
    n_clusters : int or None, default=None
        ``None``: the number of distinct labels.
    n_components : int or None, default=512
        PCA dimensions before k-means (capped by the data); ``None`` skips it.
    n_init : int, default=10
        k-means restarts (the best inertia is kept).
    random_state : int, RandomState instance or None, default=None
        Seeds k-means++.

    Returns
    -------
    scores : dict
        ``{"ami": adjusted mutual information, "ari": adjusted Rand index}``.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from skfungi.protocols import evaluate_kmeans
    >>> X, y = load_iris(return_X_y=True)
    >>> {name: round(value, 3) for name, value in evaluate_kmeans(X, y, random_state=0).items()}
    {'ami': 0.755, 'ari': 0.73}
    """
    features = check_array(features, dtype=[np.float64, np.float32])
    labels = np.asarray(labels)
    if labels.shape != (features.shape[0],):
        raise ValueError(f"labels has shape {labels.shape}, expected ({features.shape[0]},).")
    n_clusters = len(np.unique(labels)) if n_clusters is None else n_clusters
    _check_positive_int("n_clusters", n_clusters)
    if n_components is not None:
        features = CappedPCA(n_components).fit_transform(features)
    clusters = KMeans(n_clusters, n_init=n_init, random_state=random_state).fit_predict(features)
    return {
        "ami": float(adjusted_mutual_info_score(labels, clusters)),
        "ari": float(adjusted_rand_score(labels, clusters)),
    }


# -- retrieval -----------------------------------------------------------------------------


def retrieval_average_precision(
    query_features,
    database_features,
    relevance,
    *,
    ignore=None,
    metric: str = "ip",
    interpolation: str = "step",
    batch_size: int | None = None,
) -> np.ndarray:
    """Average precision of each query's ranking of the database.

    The database is ranked by decreasing similarity to the query (ties keep
    database order). With ``interpolation="step"``, AP is the mean, over the
    relevant items, of the precision at their rank (scikit-learn's
    ``average_precision_score``); ``"trapezoid"`` averages the precisions
    just before and at each relevant item, as the revisited Oxford / Paris
    evaluation code does.

    Parameters
    ----------
    query_features : array-like of shape (n_queries, n_features)
    database_features : array-like of shape (n_database, n_features)
    relevance : array-like or sparse matrix of shape (n_queries, n_database), bool
        ``relevance[q, i]``: database item ``i`` is a correct answer to
        query ``q``. From labels: ``query_labels[:, None] == database_labels``.
    ignore : array-like or sparse matrix of shape (n_queries, n_database), bool, optional
        Items removed from a query's ranking before scoring (the "junk"
        images of revisited Oxford / Paris, or the query itself when the
        queries are database items).
    metric : {"ip", "cosine", "euclidean"}, default="ip"
        Similarity: inner product (the paper, on PCA features), cosine, or
        negative Euclidean distance.
    interpolation : {"step", "trapezoid"}, default="step"
    batch_size : int or None, default=None
        Queries ranked at once; ``None`` keeps each batch's score matrix
        near 16 M entries.

    Returns
    -------
    average_precision : ndarray of shape (n_queries,)
        NaN for queries with no relevant (non-ignored) item.
    """
    queries = check_array(query_features, dtype=[np.float64, np.float32], input_name="query_features")
    database = check_array(database_features, dtype=[np.float64, np.float32], input_name="database_features")
    if queries.shape[1] != database.shape[1]:
        raise ValueError(
            f"query_features has {queries.shape[1]} features but database_features has {database.shape[1]}."
        )
    shape = (queries.shape[0], database.shape[0])
    relevance = _bool_matrix(relevance, shape, "relevance")
    ignore = None if ignore is None else _bool_matrix(ignore, shape, "ignore")
    if metric not in ("ip", "cosine", "euclidean"):
        raise ValueError(f"metric must be 'ip', 'cosine' or 'euclidean', got {metric!r}.")
    if interpolation not in ("step", "trapezoid"):
        raise ValueError(f"interpolation must be 'step' or 'trapezoid', got {interpolation!r}.")
    if metric == "cosine":
        queries, database = _unit_rows(queries), _unit_rows(database)
    if batch_size is None:
        batch_size = max(1, 16_000_000 // max(1, database.shape[0]))
    _check_positive_int("batch_size", batch_size)

    average_precision = np.empty(shape[0])
    for start in range(0, shape[0], batch_size):
        stop = min(start + batch_size, shape[0])
        scores = (queries[start:stop] @ database.T).astype(np.float64)
        if metric == "euclidean":
            scores = 2 * scores - (queries[start:stop] ** 2).sum(1)[:, None] - (database**2).sum(1)[None, :]
        relevant = _dense_rows(relevance, start, stop)
        if ignore is not None:
            ignored = _dense_rows(ignore, start, stop)
            scores[ignored] = -np.inf  # ranked last, and never relevant
            relevant &= ~ignored
        order = np.argsort(-scores, axis=1, kind="stable")
        hits_in_order = np.take_along_axis(relevant, order, axis=1)
        average_precision[start:stop] = _average_precision(hits_in_order, interpolation)
    return average_precision


def retrieval_map(
    query_features,
    database_features,
    relevance,
    *,
    ignore=None,
    metric: str = "ip",
    interpolation: str = "step",
    batch_size: int | None = None,
) -> float:
    """Mean average precision of ranking ``database_features`` for each query.

    Parameters are those of :func:`retrieval_average_precision`; queries
    without any relevant item are left out of the mean (as in the revisited
    Oxford / Paris evaluation), with a warning.

    Returns
    -------
    mean_average_precision : float
        In [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from skfungi.protocols import retrieval_map
    >>> database = np.eye(4)
    >>> queries = np.array([[1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 0.2, 1.0]])
    >>> relevance = np.array([[True, True, False, False], [False, False, True, False]])
    >>> retrieval_map(queries, database, relevance)  # query 0: AP 1; query 1: relevant item ranked 2nd, AP 0.5
    0.75
    """
    average_precision = retrieval_average_precision(
        query_features,
        database_features,
        relevance,
        ignore=ignore,
        metric=metric,
        interpolation=interpolation,
        batch_size=batch_size,
    )
    scored = ~np.isnan(average_precision)
    if not scored.any():
        raise ValueError("No query has a relevant database item; mean average precision is undefined.")
    if not scored.all():
        warnings.warn(
            f"{int((~scored).sum())} of {scored.size} queries have no relevant database item and are left out "
            "of the mean.",
            UserWarning,
            stacklevel=2,
        )
    return float(average_precision[scored].mean())


# -- helpers ---------------------------------------------------------------------------------


def _classification_scores(y_true, y_pred) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return {
            "top1": float(accuracy_score(y_true, y_pred)),
            "mean_per_class": float(balanced_accuracy_score(y_true, y_pred)),
        }


def _average_precision(hits: np.ndarray, interpolation: str) -> np.ndarray:
    """AP of each row of a boolean matrix of hits in ranked order (NaN for rows without a hit)."""
    n_relevant = hits.sum(axis=1)
    ranks = np.arange(1, hits.shape[1] + 1)  # 1-based rank of each position
    found = np.cumsum(hits, axis=1)  # relevant items at or above each rank
    precision_at = found / ranks
    if interpolation == "trapezoid":
        # Precision just before the j-th relevant item (j-1 found in rank-1 items; 1 at rank 1).
        before = np.where(ranks > 1, (found - 1) / np.maximum(ranks - 1, 1), 1.0)
        precision_at = (precision_at + before) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_relevant > 0, (precision_at * hits).sum(axis=1) / n_relevant, np.nan)


def _bool_matrix(matrix, shape: tuple[int, int], name: str):
    if sp.issparse(matrix):
        matrix = sp.csr_matrix(matrix, dtype=bool)
    else:
        matrix = np.asarray(matrix)
        if matrix.dtype != bool and not np.isin(matrix, (0, 1)).all():
            raise ValueError(f"{name} must be boolean (or 0/1).")
        matrix = matrix.astype(bool, copy=False)
    if matrix.shape != shape:
        raise ValueError(f"{name} has shape {matrix.shape}, expected (n_queries, n_database) = {shape}.")
    return matrix


def _dense_rows(matrix, start: int, stop: int) -> np.ndarray:
    rows = matrix[start:stop]
    return rows.toarray() if sp.issparse(rows) else np.array(rows, dtype=bool)


def _unit_rows(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1)


def _check_positive_int(name: str, value) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
