"""PCA as the paper does it: :class:`CappedPCA`.

The paper reduces every feature set (the embedding-only baseline too) to 512
dimensions with a full-SVD PCA fit on the training features, and does not
renormalise afterwards. With fewer training samples or features than 512 the
rule is ``min(512, n_features, n_train)`` components: every direction of the
centred training data is kept, so Euclidean neighbours are those of the
unreduced features (the paper's "PCA skipped when 512 >= n_train").
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.utils.validation import check_is_fitted, validate_data

from ._common import check_positive_int

__all__ = ["PAPER_PCA_DIMENSIONS", "CappedPCA"]

#: The paper's PCA dimension (before the cap by the data).
PAPER_PCA_DIMENSIONS = 512


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

    def __init__(self, n_components=PAPER_PCA_DIMENSIONS, *, svd_solver="full", whiten=False, random_state=None):
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
        check_positive_int("n_components", self.n_components)
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
