"""Nearest rows among unit vectors, exactly or through hnswlib, optionally leaving one group out.

Both dense FUNGI and the segmenter search unit vectors by cosine similarity:
the negatives of a patch are its nearest patches of *other* images in the
support set, and a query patch votes with its nearest patches of the memory
bank. :class:`PatchIndex` answers both: it holds the rows with a group id per
row (the image they come from) and returns, per query, the ``k`` most similar
rows, leaving out the rows of one group when asked.

Small sets are searched exactly (one matrix product per block of queries);
large ones through :class:`~skfungi.neighbors.HNSWTransformer`. To leave a
group out, the hnswlib search asks for ``k`` plus the group's row count and
drops that group's rows, so the answer is the ``k`` nearest rows outside the
group whenever the approximate search finds them.
"""

from __future__ import annotations

import numpy as np

from ..neighbors import HNSWTransformer

__all__ = ["ALGORITHMS", "EXACT_MAX_ROWS", "PatchIndex"]

ALGORITHMS = ("auto", "exact", "hnsw")
# "auto" searches exactly up to this many rows: a query then costs at most ~10 M multiply-adds per
# 1,000 feature dimensions, about what an hnswlib search with ef=100 costs, and there is no graph to build.
EXACT_MAX_ROWS = 10_000
# similarities of at most this many (query, row) pairs are held at once by the exact search
_EXACT_BLOCK = 4_000_000


class PatchIndex:
    """Rows of unit vectors with a group id each, searched by cosine similarity.

    Parameters
    ----------
    algorithm : {"auto", "exact", "hnsw"}, default="auto"
        ``"auto"`` is exact up to :data:`EXACT_MAX_ROWS` rows, hnswlib above.
    M, ef_construction, ef : int
        hnswlib's graph settings (see :class:`~skfungi.neighbors.HNSWTransformer`).
    random_state : int, default=0
        Seeds hnswlib's level generator (taken modulo 2**32) (built with one thread, the graph is
        a function of the rows, their order and this seed).

    Attributes
    ----------
    n_rows_ : int
    groups_ : ndarray of shape (n_rows_,)
        Group id of each row.
    algorithm_ : {"exact", "hnsw"}
    """

    def __init__(self, algorithm="auto", *, M=16, ef_construction=200, ef=100, random_state=0):
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}.")
        self.algorithm = algorithm
        self.M = M
        self.ef_construction = ef_construction
        self.ef = ef
        self.random_state = random_state

    def fit(self, vectors: np.ndarray, groups: np.ndarray | None = None, expected_rows: int | None = None):
        """Start the index with ``vectors`` (``(n, d)`` unit rows) and their ``groups`` (``(n,)`` ints).

        ``expected_rows`` (default ``n``) is the total the index will hold after
        :meth:`partial_fit` calls; ``"auto"`` chooses the algorithm from it.
        """
        total = len(vectors) if expected_rows is None else int(expected_rows)
        self.algorithm_ = self.algorithm if self.algorithm != "auto" else _auto(total)
        self.n_rows_ = 0
        self.groups_ = np.empty(0, dtype=np.int64)
        if self.algorithm_ == "exact":
            self._chunks = []
        else:
            self._hnsw = HNSWTransformer(
                metric="cosine",
                M=self.M,
                ef_construction=self.ef_construction,
                ef=self.ef,
                n_jobs=1,
                random_state=int(self.random_state) % 2**32,  # hnswlib seeds are 32-bit
            )
        return self.partial_fit(vectors, groups)

    def partial_fit(self, vectors: np.ndarray, groups: np.ndarray | None = None):
        """Append rows (numbered after the existing ones)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be a 2-D array, got shape {vectors.shape}.")
        groups = np.zeros(len(vectors), dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
        if groups.shape != (len(vectors),):
            raise ValueError(f"groups must have one entry per row ({len(vectors)}), got shape {groups.shape}.")
        if len(vectors):
            if self.algorithm_ == "exact":
                self._chunks.append(vectors)
            else:
                self._hnsw.partial_fit(vectors)
        self.groups_ = np.concatenate([self.groups_, groups])
        self.n_rows_ += len(vectors)
        return self

    def vectors(self, indices: np.ndarray) -> np.ndarray:
        """The stored rows at ``indices`` (any shape), float32, with a trailing feature axis."""
        flat = np.asarray(indices).reshape(-1)
        if self.algorithm_ == "exact":
            rows = self._stacked()[flat]
        else:
            rows = np.asarray(self._hnsw.index_.get_items(flat, return_type="numpy"), dtype=np.float32)
        return rows.reshape(*np.shape(indices), -1)

    def search(self, queries: np.ndarray, k: int, exclude_group: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` rows most similar to each query, leaving out the rows of ``exclude_group``.

        Returns
        -------
        similarities : ndarray of shape (n_queries, k), float32
            Cosine similarities, in decreasing order.
        indices : ndarray of shape (n_queries, k), intp
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        excluded = 0 if exclude_group is None else int(np.count_nonzero(self.groups_ == exclude_group))
        if k < 1 or k > self.n_rows_ - excluded:
            raise ValueError(
                f"cannot return {k} neighbours: the index holds {self.n_rows_} rows"
                + (f", {excluded} of them in the query's own group" if excluded else "")
                + "."
            )
        if self.algorithm_ == "exact":
            return self._exact(queries, k, exclude_group if excluded else None)
        distances, indices = self._hnsw.kneighbors(queries, n_neighbors=k + excluded)
        if excluded:
            keep = self.groups_[indices] != exclude_group
            # the first k kept entries per row; a row with fewer (the search missed some) keeps its nearest excluded
            order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
            indices, distances = np.take_along_axis(indices, order, 1), np.take_along_axis(distances, order, 1)
        return (1.0 - distances).astype(np.float32), indices

    def _exact(self, queries: np.ndarray, k: int, exclude_group: int | None) -> tuple[np.ndarray, np.ndarray]:
        similarities = np.empty((len(queries), k), dtype=np.float32)
        indices = np.empty((len(queries), k), dtype=np.intp)
        masked = None if exclude_group is None else np.flatnonzero(self.groups_ == exclude_group)
        step = max(1, _EXACT_BLOCK // max(1, self.n_rows_))
        vectors = self._stacked()
        for start in range(0, len(queries), step):
            scores = queries[start : start + step] @ vectors.T
            if masked is not None:
                scores[:, masked] = -np.inf
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else np.indices(scores.shape)[1]
            top_scores = np.take_along_axis(scores, top, 1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            indices[start : start + step] = np.take_along_axis(top, order, 1)
            similarities[start : start + step] = np.take_along_axis(top_scores, order, 1)
        return similarities, indices

    def _stacked(self) -> np.ndarray:
        """The exact index's rows as one array (chunks appended by ``partial_fit`` are joined once)."""
        if len(self._chunks) != 1:
            self._chunks = [np.concatenate(self._chunks) if self._chunks else np.empty((0, 0), np.float32)]
        return self._chunks[0]


def _auto(n_rows: int) -> str:
    return "exact" if n_rows <= EXACT_MAX_ROWS else "hnsw"
