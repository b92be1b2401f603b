"""Retrieval: average precision of a ranking by similarity (:func:`retrieval_map`).

The paper ranks a database by inner product with each query on the PCA
features; revisited Oxford / Paris average the precisions just before and at
each relevant item (``interpolation="trapezoid"``) and drop "junk" images from
the ranking (``ignore``).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_array

from ._common import check_positive_int

__all__ = ["retrieval_average_precision", "retrieval_map"]


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
    check_positive_int("batch_size", batch_size)

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
