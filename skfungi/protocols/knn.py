"""The paper's kNN protocol, full and few-shot: :func:`make_knn_classifier`, :func:`evaluate_knn`.

k = 20, uniform vote, Euclidean distance after :class:`~skfungi.protocols.CappedPCA`
fitted on the training features; top-1 and mean-per-class accuracy. Few-shot
(:func:`evaluate_few_shot_knn`): the first ``n`` training samples of each class,
and ``k = min(20, n)`` neighbours.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline

from ..neighbors import HNSWTransformer
from ._common import check_positive_int, classification_scores
from .pca import PAPER_PCA_DIMENSIONS, CappedPCA

__all__ = [
    "PAPER_N_NEIGHBORS",
    "TemperatureWeights",
    "evaluate_few_shot_knn",
    "evaluate_knn",
    "few_shot_indices",
    "make_knn_classifier",
]

#: The paper's number of voting neighbours.
PAPER_N_NEIGHBORS = 20


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
    n_neighbors: int = PAPER_N_NEIGHBORS,
    *,
    n_components: int | None = PAPER_PCA_DIMENSIONS,
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
    check_positive_int("n_neighbors", n_neighbors)
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
    n_neighbors: int = PAPER_N_NEIGHBORS,
    n_components: int | None = PAPER_PCA_DIMENSIONS,
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
    return classification_scores(test_labels, predicted)


# -- few-shot --------------------------------------------------------------------------


def few_shot_indices(labels, shots: int) -> np.ndarray:
    """Positions of the first ``shots`` samples of each class, in the order of ``labels``.

    Parameters
    ----------
    labels : array-like of shape (n_samples,)
        Classes of the training samples, in their (shuffled) order.
    shots : int
        Samples kept per class (all of a class's samples if it has fewer).

    Returns
    -------
    indices : ndarray of int, sorted
        Rows of the few-shot training set.

    Examples
    --------
    >>> from skfungi.protocols import few_shot_indices
    >>> few_shot_indices(["b", "a", "b", "a", "b"], 2).tolist()
    [0, 1, 2, 3]
    """
    check_positive_int("shots", shots)
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}.")
    kept = [np.flatnonzero(labels == label)[:shots] for label in np.unique(labels)]
    return np.sort(np.concatenate(kept))


def evaluate_few_shot_knn(
    train_features,
    train_labels,
    test_features,
    test_labels,
    shots: int,
    *,
    n_neighbors: int = PAPER_N_NEIGHBORS,
    n_components: int | None = PAPER_PCA_DIMENSIONS,
    vote: str = "uniform",
    temperature: float = 0.07,
) -> dict[str, float]:
    """kNN trained on the first ``shots`` samples of each class, with ``k = min(n_neighbors, shots)``.

    The paper keeps k = 20; with k at least the few-shot training set's size
    (2 classes x 5 shots, say) every test sample would get the same majority
    vote of all training samples, so k never exceeds the shots per class. The
    PCA is fitted on the few-shot training set; capped by its size it keeps
    every direction, which is the paper's "PCA skipped when 512 >= n_train".

    Parameters
    ----------
    train_features, test_features : array-like of shape (n, n_features)
    train_labels, test_labels : array-like of shape (n,)
        The training samples in the order the "first" samples are taken from.
    shots : int
        Training samples per class.
    n_neighbors, n_components, vote, temperature
        As in :func:`make_knn_classifier`; ``n_neighbors`` is capped by ``shots``.

    Returns
    -------
    scores : dict
        ``{"top1", "mean_per_class"}``, as in :func:`evaluate_knn`.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skfungi.protocols import evaluate_few_shot_knn
    >>> X, y = load_digits(return_X_y=True)
    >>> round(evaluate_few_shot_knn(X[:1000], y[:1000], X[1000:], y[1000:], shots=5)["top1"], 3)
    0.759
    """
    few = few_shot_indices(train_labels, shots)
    check_positive_int("n_neighbors", n_neighbors)
    return evaluate_knn(
        _rows(train_features, few),
        np.asarray(train_labels)[few],
        test_features,
        test_labels,
        n_neighbors=min(n_neighbors, shots),
        n_components=n_components,
        vote=vote,
        temperature=temperature,
    )


def _rows(features, indices: np.ndarray):
    """Rows of an array or DataFrame by position."""
    return features.iloc[indices] if hasattr(features, "iloc") else np.asarray(features)[indices]
