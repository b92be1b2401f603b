"""Searching an hnswlib index: batches of queries, widening ``ef`` where hnswlib cannot reach k neighbours,
an exact search as the last resort, and hnswlib's raw distances turned into the metric's."""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["SPACES", "check_finite_rows", "check_float32_distances", "drop_self", "search", "search_training_rows"]

# metric -> hnswlib space
SPACES = {"euclidean": "l2", "sqeuclidean": "l2", "cosine": "cosine", "ip": "ip"}


def search(estimator, X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Distances (in the metric) and indices of the ``k`` neighbours of each row of ``X`` in the fitted index."""
    distances = np.empty((X.shape[0], k), dtype=np.float32)
    indices = np.empty((X.shape[0], k), dtype=np.intp)
    for start in range(0, X.shape[0], estimator.batch_size):
        batch = np.ascontiguousarray(X[start : start + estimator.batch_size], dtype=np.float32)
        found, dist = _knn_query(estimator, batch, k)
        indices[start : start + len(batch)] = found
        distances[start : start + len(batch)] = _to_metric(dist, estimator.metric)
    return distances, indices


def search_training_rows(estimator, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`search` for the indexed rows themselves, read back from the index batch by batch."""
    n_samples = estimator.n_samples_fit_
    distances = np.empty((n_samples, k), dtype=np.float32)
    indices = np.empty((n_samples, k), dtype=np.intp)
    for start in range(0, n_samples, estimator.batch_size):
        stop = min(start + estimator.batch_size, n_samples)
        batch = np.asarray(estimator.index_.get_items(np.arange(start, stop), return_type="numpy"), dtype=np.float32)
        found, dist = _knn_query(estimator, batch, k)
        indices[start:stop] = found
        distances[start:stop] = _to_metric(dist, estimator.metric)
    return distances, indices


def _knn_query(estimator, batch: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """hnswlib's labels and raw distances; widens ``ef``, then searches exactly, if k are not found."""
    index, ef_setting = estimator.index_, int(estimator.ef)
    widest = max(ef_setting, k, estimator.n_samples_fit_)
    try:
        for ef in dict.fromkeys((max(ef_setting, k), widest)):
            index.set_ef(ef)
            try:
                labels, distances = index.knn_query(batch, k=k, num_threads=estimator._n_threads())
                return labels.astype(np.intp), distances
            except RuntimeError:
                continue  # fewer than k reachable: a poorly connected graph (tiny M, duplicates, k near n)
    finally:
        index.set_ef(ef_setting)
    warnings.warn(
        f"hnswlib could not reach {k} neighbours even with ef={widest} (the graph is poorly connected; "
        "a larger M or ef_construction helps); these queries were answered by exact search.",
        RuntimeWarning,
        stacklevel=5,
    )
    return _exact_query(estimator, batch, k)


def _exact_query(estimator, batch: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute force over the indexed vectors, in hnswlib's raw distances."""
    queries = batch.astype(np.float32)
    if estimator.metric == "cosine":
        queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-30)
    best_distances = np.full((len(batch), 0), np.inf, dtype=np.float32)
    best_labels = np.empty((len(batch), 0), dtype=np.intp)
    step = max(1, 4_000_000 // max(1, len(batch)))
    for start in range(0, estimator.n_samples_fit_, step):
        labels = np.arange(start, min(start + step, estimator.n_samples_fit_))
        vectors = np.asarray(estimator.index_.get_items(labels, return_type="numpy"), dtype=np.float32)
        if SPACES[estimator.metric] == "l2":
            distances = (queries**2).sum(1)[:, None] - 2 * queries @ vectors.T + (vectors**2).sum(1)[None, :]
        else:
            distances = 1 - queries @ vectors.T
        best_distances = np.hstack([best_distances, distances.astype(np.float32)])
        best_labels = np.hstack([best_labels, np.broadcast_to(labels, distances.shape)])
        keep = np.argsort(best_distances, axis=1, kind="stable")[:, :k]
        best_distances = np.take_along_axis(best_distances, keep, axis=1)
        best_labels = np.take_along_axis(best_labels, keep, axis=1)
    return best_labels, best_distances


def _to_metric(distances: np.ndarray, metric: str) -> np.ndarray:
    if metric == "euclidean":
        return np.sqrt(np.maximum(distances, 0, out=distances), out=distances)
    if metric == "ip":
        return distances
    return np.maximum(distances, 0, out=distances)  # cosine's self-distance can be -1e-7


# hnswlib adds squared differences (or products) in float32: below this norm no distance overflows.
MAX_NORM = float(np.sqrt(np.finfo(np.float32).max / 4))


def check_finite_rows(X: np.ndarray, batch_size: int) -> None:
    """Refuse values that are not finite once stored as hnswlib stores them (float32), and rows so long that
    hnswlib's float32 distances overflow, naming the first offending row; batch by batch, so no full-size
    mask is made."""
    for start in range(0, X.shape[0], batch_size):
        with np.errstate(over="ignore", invalid="ignore"):
            batch = X[start : start + batch_size].astype(np.float32, copy=False)
            if np.isfinite(batch.sum(dtype=np.float64)):
                norms = np.sqrt(np.square(batch, dtype=np.float64).sum(axis=1))
                if norms.max(initial=0.0) > MAX_NORM:
                    row = start + int(np.argmax(norms > MAX_NORM))
                    raise ValueError(
                        f"Input X's row {row} has norm {norms[row - start]:.3g}; hnswlib computes distances in "
                        f"float32, which overflow to infinity beyond a norm of {MAX_NORM:.2g} and leave the "
                        "neighbours in no order. Rescale the rows first (e.g. divide by their largest norm)."
                    )
                continue
        bad_rows = np.flatnonzero(~np.isfinite(batch).all(axis=1))
        if bad_rows.size:
            row = start + int(bad_rows[0])
            value = X[row][~np.isfinite(batch[row - start])][0]
            if np.isfinite(value):
                raise ValueError(
                    f"Input X has a value beyond float32's range (3.4e38) in row {row} ({value}); hnswlib stores "
                    "float32 vectors, where it would be infinite. Rescale such rows first."
                )
            raise ValueError(
                f"Input X contains NaN or infinity in row {row} (value {value}); "
                "HNSWTransformer needs finite vectors. Drop or impute such rows first."
            )


def drop_self(distances: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove each training row from its own neighbours (scikit-learn's rule for duplicates)."""
    n_queries, k = indices.shape
    not_self = indices != np.arange(n_queries)[:, None]
    # More exact duplicates than neighbours: the row itself may be missing; drop the first entry instead.
    not_self[np.all(not_self, axis=1), 0] = False
    # A row found twice cannot happen (labels are unique); keep exactly k - 1 per row.
    return distances[not_self].reshape(n_queries, k - 1), indices[not_self].reshape(n_queries, k - 1)


def check_float32_distances(X: np.ndarray, space: str, n_rows: int = 64) -> None:
    """Refuse float64 rows whose distances hnswlib's float32 copy cannot tell apart (``1e8 + noise``: all
    distances 0 in float32, neighbours in no order), checked on the distances among the first ``n_rows``."""
    if X.dtype != np.float64 or X.shape[0] < 2:
        return
    exact = X[:n_rows]
    stored = exact.astype(np.float32).astype(np.float64)
    if space == "cosine":
        exact, stored = (
            rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-300) for rows in (exact, stored)
        )
    if space == "l2":
        true, seen = (np.stack([np.square(row - rows).sum(-1) for row in rows]) for rows in (exact, stored))
    else:
        true, seen = (-(rows @ rows.T) for rows in (exact, stored))
    off_diagonal = ~np.eye(len(exact), dtype=bool)
    spread = np.ptp(true[off_diagonal])
    error = np.abs(seen - true)[off_diagonal].max()
    if spread > 0 and error > 0.01 * spread:
        raise ValueError(
            f"Input X's float64 rows differ by less than float32 can hold: hnswlib stores float32 vectors, which "
            f"move their distances by up to {error / spread:.0%} of their spread (rows 0 to {len(exact) - 1}), so "
            "the neighbours would be in no order. Center the rows first (subtract their mean, e.g. "
            "StandardScaler(with_std=False))."
        )
