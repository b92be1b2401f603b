"""The paper's linear probe: :class:`LinearProbeClassifier`, :func:`make_linear_probe`.

Multinomial logistic regression, L2, no intercept; the L2 strength ``lambda``
is swept over :data:`PAPER_L2_PENALTIES` on a validation split, then the best
is refit on train + validation.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedShuffleSplit
from sklearn.pipeline import Pipeline
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._common import classification_scores
from .pca import PAPER_PCA_DIMENSIONS, CappedPCA

__all__ = ["PAPER_L2_PENALTIES", "LinearProbeClassifier", "evaluate_linear_probe", "make_linear_probe"]

#: The paper's sweep of the linear probe's L2 strength ``lambda``.
PAPER_L2_PENALTIES: tuple[float, ...] = tuple(float(value) for value in np.linspace(5e-6, 5e-4, 5))


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
    n_components: int | None = PAPER_PCA_DIMENSIONS,
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
    n_components: int | None = PAPER_PCA_DIMENSIONS,
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
    scores = classification_scores(test_labels, search.predict(test_features))
    scores["l2_penalty"] = float(search.best_params_["probe__l2_penalty"])
    return scores
