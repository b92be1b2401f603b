"""k-means on FUNGI features, scored against the classes: :func:`evaluate_kmeans`."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score
from sklearn.utils.validation import check_array

from ._common import check_positive_int
from .pca import PAPER_PCA_DIMENSIONS, CappedPCA

__all__ = ["evaluate_kmeans"]


def evaluate_kmeans(
    features,
    labels,
    *,
    n_clusters: int | None = None,
    n_components: int | None = PAPER_PCA_DIMENSIONS,
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
    check_positive_int("n_clusters", n_clusters)
    if n_components is not None:
        features = CappedPCA(n_components).fit_transform(features)
    clusters = KMeans(n_clusters, n_init=n_init, random_state=random_state).fit_predict(features)
    return {
        "ami": float(adjusted_mutual_info_score(labels, clusters)),
        "ari": float(adjusted_rand_score(labels, clusters)),
    }
