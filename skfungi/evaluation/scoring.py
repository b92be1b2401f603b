"""Feature sets scored on random stratified splits with the protocols of :mod:`skfungi.protocols`.

Split ``i`` is the ``i``-th split that ``StratifiedShuffleSplit(n_splits,
train_size, test_size, random_state=seed)`` draws from the pool; the ``i``-th
split does not depend on ``n_splits``, so a run of 30 splits begins with the
5 splits of a run of 5, and two runs with the same pool and seed are scored on
the same splits (:class:`Split` records a digest of each test set, so pairing
two runs can check it).

Protocols (``"name"`` or ``"name:argument"``):

* ``"knn"``: the paper's kNN: PCA to ``min(512, width, n_train)`` fitted on
  the training features, then 20 nearest neighbours, uniform vote, Euclidean;
* ``"knn_no_pca"``: the same without the PCA;
* ``"linear_probe"``: the paper's linear probe on the PCA features (L2
  strength swept on a 20% validation split of the training part);
* ``"few_shot_knn"`` (``"few_shot_knn:<shots>"``, default 5): kNN on the
  first ``shots`` training samples of each class, ``k = min(20, shots)``;
* ``"kmeans"``: k-means on the PCA features of the test part, scored by
  adjusted mutual information (``"ami"``) against the classes.

Each protocol gives ``top1`` and ``mean_per_class`` (``kmeans``: ``ami`` and
``ari``), as fractions; :func:`primary_metric` names the one that verdicts use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedShuffleSplit

from .feature_sets import FeatureSet
from .store import Block

__all__ = [
    "PROTOCOLS",
    "GramPCA",
    "Split",
    "check_pca_solver",
    "check_protocols",
    "draw_splits",
    "pca_solver",
    "primary_metric",
    "protocol_label",
    "score_feature_sets",
]

PROTOCOLS = ("knn", "knn_no_pca", "linear_probe", "few_shot_knn", "kmeans")
PCA_SOLVERS = ("auto", "full", "gram", "covariance_eigh", "randomized")
_LABELS = {
    "knn": "kNN top-1",
    "knn_no_pca": "kNN top-1 (no PCA)",
    "linear_probe": "linear probe top-1",
    "kmeans": "k-means AMI",
}
# Above these sizes the PCA uses seeded randomised SVD (see pca_solver).
EXACT_SVD_MAX_SAMPLES = 1000
EXACT_PCA_MAX_WIDTH = 2048


@dataclass(frozen=True)
class Split:
    """One random stratified train / test split of the pool.

    Attributes
    ----------
    index, seed : int
        The ``index``-th split of ``StratifiedShuffleSplit(..., random_state=seed)``.
    train, test : ndarray of int
        Positions in the pool.
    """

    index: int
    seed: int
    train: np.ndarray
    test: np.ndarray

    @property
    def test_digest(self) -> str:
        """A short digest of the sorted test positions: two runs pair a split only where it is equal."""
        return hashlib.sha256(np.sort(self.test).astype(np.int64).tobytes()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "seed": self.seed,
            "n_train": len(self.train),
            "n_test": len(self.test),
            "test_digest": self.test_digest,
        }


def draw_splits(labels, n_splits: int, *, train_size=None, test_size=0.3, seed: int = 0) -> list[Split]:
    """``n_splits`` random stratified splits of the pool whose classes are ``labels``.

    Examples
    --------
    >>> splits = draw_splits(np.arange(20) % 2, 3, test_size=0.4)
    >>> [(split.index, len(split.train), len(split.test)) for split in splits]
    [(0, 12, 8), (1, 12, 8), (2, 12, 8)]
    """
    labels = np.asarray(labels)
    if not isinstance(n_splits, (int, np.integer)) or isinstance(n_splits, bool) or n_splits < 1:
        raise ValueError(f"the number of splits must be a positive int, got {n_splits!r}.")
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"the labels hold {len(classes)} class; scoring needs at least 2.")
    if counts.min() < 2:
        rare = classes.tolist()[int(np.argmin(counts))]
        raise ValueError(f"class {rare!r} has {counts.min()} sample; every class needs at least 2 to be split.")
    splitter = StratifiedShuffleSplit(int(n_splits), train_size=train_size, test_size=test_size, random_state=seed)
    return [
        Split(index, int(seed), train, test)
        for index, (train, test) in enumerate(splitter.split(np.zeros(len(labels)), labels))
    ]


def check_protocols(protocols: Sequence[str]) -> list[str]:
    """The protocol names, checked (``"few_shot_knn:10"`` takes a number of shots)."""
    if isinstance(protocols, str):
        protocols = [part.strip() for part in protocols.split(",")]
    checked = []
    for protocol in protocols:
        name, _, argument = str(protocol).partition(":")
        if name not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; use {', '.join(PROTOCOLS)} (few_shot_knn:<shots>).")
        if argument and (name != "few_shot_knn" or not argument.isdigit() or int(argument) < 1):
            raise ValueError(f"protocol {protocol!r}: only few_shot_knn takes an argument, a number of shots.")
        checked.append(protocol)
    if not checked:
        raise ValueError("no protocol given.")
    if len(set(checked)) != len(checked):
        raise ValueError(f"protocols {checked} name one twice.")
    return checked


def check_pca_solver(pca: str) -> str:
    """``pca``, checked to name a solver of :func:`score_feature_sets` (before any extraction, not after)."""
    if pca not in PCA_SOLVERS:
        raise ValueError(f"pca={pca!r} is not a PCA solver; use one of {', '.join(PCA_SOLVERS)}.")
    return pca


def primary_metric(protocol: str) -> str:
    """The metric a protocol's verdicts use: ``"ami"`` for k-means, ``"top1"`` otherwise."""
    return "ami" if protocol == "kmeans" else "top1"


def protocol_label(protocol: str) -> str:
    """``kNN top-1``, ``5-shot kNN top-1``, ...: a protocol's metric in tables."""
    name, _, argument = protocol.partition(":")
    if name == "few_shot_knn":
        return f"{argument or 5}-shot kNN top-1"
    return _LABELS[name]


def pca_solver(n_samples: int, width: int) -> str:
    """The PCA solver of ``pca="auto"``: exact where it is cheap, seeded randomised SVD otherwise.

    Up to 1,000 training samples the PCA is exact: the full SVD, or, when the
    samples are fewer than the features and more than the 512 components
    kept, the eigendecomposition of their Gram matrix (``"gram"``: the same
    components at a fraction of the cost). Beyond, the covariance's
    eigendecomposition for up to 2,048 features, and a seeded randomised SVD
    for wider features.

    Examples
    --------
    >>> pca_solver(300, 5120), pca_solver(700, 5120), pca_solver(5000, 1280), pca_solver(5000, 5120)
    ('full', 'gram', 'covariance_eigh', 'randomized')
    """
    from ..protocols import PAPER_PCA_DIMENSIONS

    if n_samples <= EXACT_SVD_MAX_SAMPLES:
        return "gram" if PAPER_PCA_DIMENSIONS + 1 < n_samples < width else "full"
    if width <= EXACT_PCA_MAX_WIDTH:
        return "covariance_eigh"
    return "randomized"


class GramPCA:
    """Exact PCA of ``n`` samples of ``d > n`` features from the ``n x n`` Gram matrix of the centred samples.

    With ``X = U S W^T`` (centred), ``X X^T = U S^2 U^T`` and the components
    are ``W_k = X^T U_k / S_k``: the top ``k`` components of the full SVD (up
    to their signs, which change no distance), for ``O(n^2 d)`` instead of the
    SVD's larger constant. ``k`` must be below the rank ``n - 1``.
    """

    def __init__(self, n_components: int):
        self.n_components = n_components

    def fit(self, X):
        X = np.asarray(X, dtype=np.float64)
        self.mean_ = X.mean(axis=0)
        centred = X - self.mean_
        values, vectors = np.linalg.eigh(centred @ centred.T)
        order = np.argsort(values)[::-1][: self.n_components]
        singular = np.sqrt(np.maximum(values[order], np.finfo(np.float64).tiny))
        self.components_ = (centred.T @ vectors[:, order] / singular).T  # (k, d), orthonormal rows
        return self

    def transform(self, X):
        return (np.asarray(X, dtype=np.float64) - self.mean_) @ self.components_.T


def _pca(train: np.ndarray, solver: str):
    from ..protocols import PAPER_PCA_DIMENSIONS, CappedPCA

    chosen = pca_solver(*train.shape) if solver == "auto" else solver
    if chosen == "gram":
        return GramPCA(min(PAPER_PCA_DIMENSIONS, *train.shape)).fit(train)
    return CappedPCA(PAPER_PCA_DIMENSIONS, svd_solver=chosen, random_state=0).fit(train)


def _score(protocol: str, train, y_train, test, y_test, reduced: Callable) -> dict[str, float]:
    from ..protocols import evaluate_few_shot_knn, evaluate_kmeans, evaluate_knn, evaluate_linear_probe

    name, _, argument = protocol.partition(":")
    if name == "knn":
        return evaluate_knn(*reduced(), n_components=None)
    if name == "knn_no_pca":
        return evaluate_knn(train, y_train, test, y_test, n_components=None)
    if name == "few_shot_knn":
        return evaluate_few_shot_knn(train, y_train, test, y_test, int(argument or 5))
    if name == "linear_probe":
        scores = evaluate_linear_probe(*reduced(), n_components=None, random_state=0)
        return {"top1": scores["top1"], "mean_per_class": scores["mean_per_class"]}
    _, _, reduced_test, _ = reduced()
    return evaluate_kmeans(reduced_test, y_test, n_components=None, random_state=0)


def score_feature_sets(
    blocks: Mapping[str, Block],
    labels,
    feature_sets: Sequence[FeatureSet],
    splits: Sequence[Split],
    protocols: Sequence[str] = ("knn",),
    *,
    pca: str = "auto",
    threads: int | None = None,
    on_scored: Callable[[], None] | None = None,
) -> dict[FeatureSet, dict[str, dict[str, list[float]]]]:
    """Every protocol's scores of every feature set on every split.

    Parameters
    ----------
    blocks : mapping of str to Block
        The extracted blocks; a feature set concatenates its blocks' features in its order.
    labels : array-like of shape (n_pool,)
    feature_sets : sequence of tuple of str
    splits : sequence of Split
    protocols : sequence of str
        See the module's docstring.
    pca : {"auto", "full", "gram", "covariance_eigh", "randomized"}, default="auto"
        The PCA's solver: ``"full"`` is the paper's full SVD; ``"auto"``
        takes :func:`pca_solver`'s exact solvers where they are cheap and a
        seeded randomised SVD for thousands of samples of wide features.
    threads : int or None
        The BLAS threads of the scoring (None: as they are). Pass torch's
        thread count: BLAS threads beyond it only wait for busy cores (on a
        loaded 2-core machine a small SVD took 50 times longer with 2 BLAS
        threads than with 1, after torch ran with 1).
    on_scored : callable or None
        Called after each feature set of each split.

    Returns
    -------
    scores : dict
        ``scores[feature_set][protocol][metric]`` is a list with one value per split.
    """
    from threadpoolctl import threadpool_limits

    labels = np.asarray(labels)
    protocols = check_protocols(protocols)
    check_pca_solver(pca)
    with threadpool_limits(limits=threads, user_api="blas"):
        return _score_all(blocks, labels, feature_sets, splits, protocols, pca, on_scored)


def _score_all(blocks, labels, feature_sets, splits, protocols, pca, on_scored) -> dict:
    scores = {feature_set: {protocol: {} for protocol in protocols} for feature_set in feature_sets}
    for split in splits:
        y_train, y_test = labels[split.train], labels[split.test]
        for feature_set in feature_sets:
            features = np.hstack([blocks[name].features for name in feature_set])
            train, test = features[split.train], features[split.test]
            cached = {}

            def reduced(train=train, test=test, y_train=y_train, y_test=y_test, cached=cached):
                if not cached:
                    fitted = _pca(train, pca)
                    cached["value"] = (fitted.transform(train), y_train, fitted.transform(test), y_test)
                return cached["value"]

            for protocol in protocols:
                result = _score(protocol, train, y_train, test, y_test, reduced)
                for metric, value in result.items():
                    scores[feature_set][protocol].setdefault(metric, []).append(float(value))
            if on_scored is not None:
                on_scored()
    return scores
