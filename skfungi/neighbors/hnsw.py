"""Approximate nearest neighbours with hnswlib, behind scikit-learn's ``KNeighborsTransformer`` contract.

:class:`HNSWTransformer` builds a hierarchical navigable small-world graph
(hnswlib) over the training rows and returns sparse neighbour graphs exactly
shaped like :class:`sklearn.neighbors.KNeighborsTransformer`'s, so that
``KNeighborsClassifier(metric="precomputed")``, ``DBSCAN(metric="precomputed")``,
``Isomap`` or ``TSNE`` consume them unchanged.

hnswlib's traps, and what this module does about them:

* the ``"l2"`` space returns *squared* distances: ``metric="euclidean"``
  takes the square root, ``metric="sqeuclidean"`` keeps them;
* ``"cosine"`` distances (``1 - cos``) of a point to itself come back
  slightly negative: they are clipped at 0 (sparse-graph consumers reject
  negative distances);
* labels are ``uint64``: they are returned as ``intp``;
* a search needs ``ef >= k``: ``ef`` is raised to ``k`` for that search;
* a search for more neighbours than the index holds fails with an obscure
  message: it is refused up front with the counts, as scikit-learn does.
"""

from __future__ import annotations

from typing import ClassVar

import hnswlib
import numpy as np
import scipy.sparse as sp
from joblib import effective_n_jobs
from sklearn import get_config
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .._utils.seeding import base_seed, derive_seed
from .._utils.sklearn_compat import StrOptions, fit_context
from .._utils.validation import int_range
from ._files import load, save
from ._queries import SPACES, check_finite_rows, check_float32_distances, drop_self, search, search_training_rows

__all__ = ["HNSWTransformer"]

_MODES = ("distance", "connectivity")


class HNSWTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Graph of approximate k nearest neighbours, built with hnswlib (HNSW).

    A drop-in replacement for :class:`sklearn.neighbors.KNeighborsTransformer`
    that scales to millions of rows: ``transform(X)`` returns a CSR matrix of
    shape ``(n_queries, n_samples_fit_)`` holding, per row, the distances to
    the ``n_neighbors + 1`` nearest training rows in ``mode="distance"`` (a
    query that is also a training row finds itself at distance 0), or
    ``n_neighbors`` ones in ``mode="connectivity"``.

    Parameters
    ----------
    mode : {"distance", "connectivity"}, default="distance"
        Type of the returned graph, as in ``KNeighborsTransformer``.
    n_neighbors : int, default=5
        Neighbours per query in :meth:`transform` (plus one in distance mode)
        and the default of :meth:`kneighbors`. A query for more neighbours
        than the index holds raises a ``ValueError``.
    metric : {"euclidean", "sqeuclidean", "cosine", "ip"}, default="euclidean"
        ``"cosine"`` is ``1 - cos(x, y)`` (clipped at 0); ``"ip"`` is
        hnswlib's inner-product "distance" ``1 - <x, y>``, which is negative
        when ``<x, y> > 1`` (fine for :meth:`kneighbors` and retrieval, but
        ``metric="precomputed"`` estimators reject negative graphs: use
        ``"cosine"`` or normalised vectors with them).
    M : int, default=16
        Links per node and layer (hnswlib's ``M``); the bottom layer keeps
        ``2 * M``. Larger: better recall on hard data, more memory
        (``8 * M + 4`` bytes per row on top of the vectors), slower build.
    ef_construction : int, default=200
        Size of the candidate list while inserting; larger builds a better
        graph, more slowly.
    ef : int, default=100
        Size of the candidate list while searching (the recall/speed knob; it
        can be changed after fitting with ``set_params`` and takes effect at
        the next search). It is raised to ``k`` for searches of ``k > ef``.
    batch_size : int, default=10_000
        Rows added to, or searched in, the index per call into hnswlib. Each
        batch is converted to contiguous float32 on its own, so ``fit`` never
        holds a second full copy of ``X``.
    n_jobs : int or None, default=None
        hnswlib threads for building and searching; ``None`` means 1 (unless
        in a :func:`joblib.parallel_config` context), ``-1`` all cores. A
        build with more than one thread inserts rows in a racy order, so its
        graph (hence approximate results) can differ between runs.
    random_state : int, RandomState instance or None, default=None
        Seeds hnswlib's level generator. With ``n_jobs=1`` the graph, and so
        every result, is a function of the data and ``random_state``.

    Attributes
    ----------
    index_ : hnswlib.Index
        The search graph, with a copy of the vectors (normalised for
        ``"cosine"``). It pickles with the estimator.
    n_samples_fit_ : int
        Number of indexed rows.
    n_features_in_ : int
        Dimension of the indexed vectors.
    feature_names_in_ : ndarray of str
        Column names of ``X``, when ``X`` had string column names.

    See Also
    --------
    sklearn.neighbors.KNeighborsTransformer : Exact graph, same contract.
    skfungi.protocols.make_knn_classifier : The paper's kNN protocol.

    Notes
    -----
    Memory: the index holds ``n * (4 * d + 8 * M + 12)`` bytes (the float32
    vectors, bottom-layer links and labels) plus about ``1 / M`` of that for
    the upper layers: 1.07x the raw float32 data for ``d=512, M=16``. To build
    over data that does not fit in memory twice, pass an ``np.memmap`` to
    :meth:`fit` or feed chunks to :meth:`partial_fit`. Pickling copies the
    index once more, transiently; :meth:`save` writes hnswlib's own file
    instead, which :meth:`load` reads back without unpickling anything.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.neighbors import KNeighborsClassifier
    >>> from sklearn.pipeline import make_pipeline
    >>> from skfungi.neighbors import HNSWTransformer
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(200, 16)), rng.integers(0, 3, 200)
    >>> graph = HNSWTransformer(n_neighbors=5, random_state=0).fit_transform(X)
    >>> graph.shape, graph.nnz
    ((200, 200), 1200)
    >>> model = make_pipeline(HNSWTransformer(n_neighbors=10, metric="cosine", random_state=0),
    ...                       KNeighborsClassifier(10, metric="precomputed"))
    >>> model.fit(X, y).predict(X[:3]).shape
    (3,)
    """

    def __init__(
        self,
        *,
        mode="distance",
        n_neighbors=5,
        metric="euclidean",
        M=16,
        ef_construction=200,
        ef=100,
        batch_size=10_000,
        n_jobs=None,
        random_state=None,
    ):
        self.mode = mode
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.M = M
        self.ef_construction = ef_construction
        self.ef = ef
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.random_state = random_state

    _parameter_constraints: ClassVar[dict] = {
        "mode": [StrOptions(set(_MODES))],
        "n_neighbors": [int_range(1)],
        "metric": [StrOptions(set(SPACES))],
        "M": [int_range(2)],  # hnswlib fails obscurely ("Not enough memory: addPoint ...") with M=1
        "ef_construction": [int_range(1)],
        "ef": [int_range(1)],
        "batch_size": [int_range(1)],
        "n_jobs": [None, int_range(1), int_range(None, -1)],
        "random_state": ["random_state"],
    }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # -- building ---------------------------------------------------------------

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Index the rows of ``X``, ``batch_size`` rows at a time.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training vectors; float32 input (or an ``np.memmap`` of it) is
            added batch by batch without a copy.
        y : ignored

        Returns
        -------
        self : HNSWTransformer
        """
        X = self._validate(X, reset=True)
        self._init_index(X.shape[1], capacity=X.shape[0])
        self._fit_dtype = X.dtype
        self._add(X)
        return self

    def partial_fit(self, X, y=None):
        """Add the rows of ``X`` to the index (creating it on the first call).

        Rows get the indices ``n_samples_fit_, n_samples_fit_ + 1, ...`` in
        the order they arrive, so streaming chunks of a large array gives the
        same numbering as fitting the whole array. The index grows as needed;
        ``M``, ``ef_construction``, ``metric`` and ``random_state`` are read
        on the first call only.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self : HNSWTransformer

        Examples
        --------
        >>> import numpy as np
        >>> from skfungi.neighbors import HNSWTransformer
        >>> data = np.random.default_rng(0).normal(size=(1000, 8)).astype(np.float32)
        >>> index = HNSWTransformer(n_neighbors=3, random_state=0)
        >>> for chunk in np.array_split(data, 4):
        ...     index = index.partial_fit(chunk)
        >>> index.n_samples_fit_
        1000
        >>> index.kneighbors(data[:2], return_distance=False)[:, 0].tolist()
        [0, 1]
        """
        self._validate_params()
        first_call = not hasattr(self, "index_")
        X = self._validate(X, reset=first_call)
        if first_call:
            self._init_index(X.shape[1], capacity=X.shape[0])
            self._fit_dtype = X.dtype
        else:
            needed = self.n_samples_fit_ + X.shape[0]
            capacity = self.index_.get_max_elements()
            if needed > capacity:
                # Doubling keeps the number of reallocations logarithmic; realloc of a large block
                # remaps pages instead of copying them, and pages never written are never committed.
                self.index_.resize_index(max(needed, 2 * capacity))
        self._add(X)
        return self

    def _init_index(self, dim: int, capacity: int) -> None:
        seed = derive_seed(base_seed(self.random_state), "hnsw-levels") % (2**32)
        index = hnswlib.Index(space=SPACES[self.metric], dim=dim)
        index.init_index(
            max_elements=capacity, M=int(self.M), ef_construction=int(self.ef_construction), random_seed=seed
        )
        index.set_ef(int(self.ef))
        self.index_ = index
        self.n_samples_fit_ = 0

    def _add(self, X: np.ndarray) -> None:
        n_threads = self._n_threads()
        start_label = self.n_samples_fit_
        for start in range(0, X.shape[0], self.batch_size):
            batch = np.ascontiguousarray(X[start : start + self.batch_size], dtype=np.float32)
            labels = np.arange(start_label + start, start_label + start + batch.shape[0], dtype=np.uint64)
            self.index_.add_items(batch, labels, num_threads=n_threads)
        self.n_samples_fit_ = start_label + X.shape[0]
        self._n_features_out = self.n_samples_fit_

    # -- searching --------------------------------------------------------------

    def kneighbors(self, X=None, n_neighbors=None, return_distance=True):
        """Approximate k nearest training rows of each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features) or None, default=None
            Queries. ``None`` queries every training row and leaves the row
            itself out of its own neighbours (scikit-learn's convention).
        n_neighbors : int or None, default=None
            Neighbours per query; ``None`` is ``self.n_neighbors``. It must
            not exceed ``n_samples_fit_`` (``n_samples_fit_ - 1`` when ``X``
            is None).
        return_distance : bool, default=True
            Also return the distances.

        Returns
        -------
        neigh_dist : ndarray of shape (n_queries, n_neighbors)
            Distances in increasing order, in the queries' float dtype (only
            with ``return_distance=True``).
        neigh_ind : ndarray of shape (n_queries, n_neighbors), intp
            Indices of the neighbours among the fitted rows.
        """
        self._validate_params()
        check_is_fitted(self)
        n_neighbors = self.n_neighbors if n_neighbors is None else n_neighbors
        if not int_range(1).is_satisfied_by(n_neighbors):
            raise ValueError(f"n_neighbors must be a positive int, got {n_neighbors!r}.")
        query_is_train = X is None
        if query_is_train:
            if n_neighbors >= self.n_samples_fit_:
                raise ValueError(
                    f"Expected n_neighbors < n_samples_fit, but n_neighbors = {n_neighbors}, "
                    f"n_samples_fit = {self.n_samples_fit_}, n_samples = {self.n_samples_fit_}: the training rows "
                    "are searched without themselves. Lower n_neighbors or index more rows."
                )
            distances, indices = search_training_rows(self, n_neighbors + 1)
            distances, indices = drop_self(distances, indices)
            dtype = self._fit_dtype
        else:
            X = self._validate(X, reset=False)
            if n_neighbors > self.n_samples_fit_:
                raise ValueError(
                    f"Expected n_neighbors <= n_samples_fit, but n_neighbors = {n_neighbors}, "
                    f"n_samples_fit = {self.n_samples_fit_}, n_samples = {X.shape[0]}. Lower n_neighbors "
                    "(in mode='distance', transform asks for n_neighbors + 1) or index more rows."
                )
            distances, indices = search(self, X, n_neighbors)
            dtype = X.dtype
        if return_distance:
            return distances.astype(dtype, copy=False), indices
        return indices

    def kneighbors_graph(self, X=None, n_neighbors=None, mode="connectivity"):
        """Sparse graph of the approximate k nearest neighbours of each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features) or None, default=None
            As in :meth:`kneighbors`.
        n_neighbors : int or None, default=None
            Neighbours per row; ``None`` is ``self.n_neighbors``.
        mode : {"connectivity", "distance"}, default="connectivity"
            Ones, or the distances, as stored values.

        Returns
        -------
        graph : sparse matrix of shape (n_queries, n_samples_fit_), CSR
            Row ``i`` stores exactly ``n_neighbors`` entries (explicit zeros
            included), sorted by increasing distance.
        """
        check_is_fitted(self)
        n_neighbors = self.n_neighbors if n_neighbors is None else n_neighbors
        if mode not in _MODES:
            raise ValueError(f"mode must be 'connectivity' or 'distance', got {mode!r}.")
        distances, indices = self.kneighbors(X, n_neighbors, return_distance=True)
        data = distances.ravel() if mode == "distance" else np.ones(distances.size, dtype=distances.dtype)
        n_queries = indices.shape[0]
        indptr = np.arange(0, n_queries * n_neighbors + 1, n_neighbors)
        graph = sp.csr_matrix((data, indices.ravel(), indptr), shape=(n_queries, self.n_samples_fit_))
        if get_config().get("sparse_interface", "spmatrix") == "sparray":
            graph = sp.csr_array(graph)
        return graph

    def transform(self, X):
        """Graph of the neighbours of the rows of ``X`` among the fitted rows.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)

        Returns
        -------
        graph : sparse matrix of shape (n_queries, n_samples_fit_), CSR
            ``n_neighbors + 1`` distances per row in ``mode="distance"``,
            ``n_neighbors`` ones in ``mode="connectivity"``.
        """
        self._validate_params()
        check_is_fitted(self)
        add_one = self.mode == "distance"
        return self.kneighbors_graph(X, mode=self.mode, n_neighbors=self.n_neighbors + add_one)

    def fit_transform(self, X, y=None):
        """Index ``X``, then return its graph (each row finds itself first).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        graph : sparse matrix of shape (n_samples, n_samples), CSR
        """
        return self.fit(X).transform(X)

    # -- files ------------------------------------------------------------------

    def save(self, folder) -> None:
        """Write the fitted index to ``folder`` (created if needed): hnswlib's own index file, ``hnsw.bin``, and
        the parameters and fitted attributes in ``hnsw.json``, which :meth:`load` (and ``skfungi search``) read.

        A ``random_state`` that is not an int is saved as None: it has seeded the graph already.
        """
        check_is_fitted(self)
        save(self, folder)

    @classmethod
    def load(cls, folder) -> HNSWTransformer:
        """The fitted ``HNSWTransformer`` saved in ``folder`` by :meth:`save` or by ``skfungi index``.

        It answers queries as the saved one did, takes other parameters
        (``ef``, ``n_neighbors``, ``n_jobs``) with ``set_params`` and keeps
        growing with :meth:`partial_fit`. In a :class:`~sklearn.pipeline.Pipeline`,
        wrap it in :class:`sklearn.frozen.FrozenEstimator`, so that fitting the
        pipeline does not index its training rows again (docs/scale_out.md).
        """
        return load(cls, folder)

    # -- internals --------------------------------------------------------------

    def _validate(self, X, reset: bool) -> np.ndarray:
        X = validate_data(self, X, reset=reset, dtype=[np.float32, np.float64], ensure_all_finite=False)
        check_finite_rows(X, self.batch_size)
        check_float32_distances(X, SPACES[self.metric])
        return X

    def _n_threads(self) -> int:
        return max(1, int(effective_n_jobs(self.n_jobs)))
