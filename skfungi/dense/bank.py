"""A memory bank of annotated patches: nearest-neighbour label propagation (HummingBird).

Each support patch is stored with its feature (a unit vector) and its label
distribution (the fraction of its pixels in each class). A query patch finds
its ``k`` most similar stored patches (cosine similarity ``s_i``), weighs them
with ``softmax(s_i / temperature)`` and gets the weighted mean of their label
distributions as class scores.

Memory: the hnswlib index holds ``4 d + 8 M + 12`` bytes per patch (float32
feature, bottom-layer links, label) plus about ``1 / M`` of that for the upper
layers, and the label distributions ``4 C`` bytes: for ``d = 768`` (dense
FUNGI on a ViT-S/16), ``M = 16`` and 21 classes, about 3.5 GB per million
patches (3.4 GB measured with 10 classes, ``benchmarks/segmentation.py``).
"""

from __future__ import annotations

import numpy as np

from .index import PatchIndex

__all__ = ["PatchMemoryBank"]


class PatchMemoryBank:
    """Patches with label distributions; a query takes the softmax-weighted vote of its nearest patches.

    Parameters
    ----------
    n_neighbors : int, default=30
    temperature : float, default=0.02
        Temperature of the softmax over cosine similarities.
    algorithm : {"auto", "exact", "hnsw"}, default="auto"
        Exact search up to 10,000 patches with ``"auto"``, hnswlib above.
    M, ef_construction, ef : int, default=16, 200, 100
        hnswlib's settings (see :class:`~skfungi.neighbors.HNSWTransformer`).
    random_state : int, default=0

    Attributes
    ----------
    n_patches_ : int
    n_classes_ : int
    labels_ : ndarray of shape (n_patches_, n_classes_)
    index_ : PatchIndex
        The stored features.

    Examples
    --------
    >>> import numpy as np
    >>> from skfungi.dense import PatchMemoryBank
    >>> features = np.eye(3, dtype=np.float32)
    >>> labels = np.eye(3, dtype=np.float32)[[0, 1, 1]]  # patch 0: class 0, patches 1 and 2: class 1
    >>> bank = PatchMemoryBank(n_neighbors=2, temperature=0.02).fit(features, labels)
    >>> bank.predict_proba(np.array([[1.0, 0.1, 0.0]], dtype=np.float32)).round(3)
    array([[1., 0., 0.]], dtype=float32)
    """

    def __init__(
        self, n_neighbors=30, temperature=0.02, algorithm="auto", *, M=16, ef_construction=200, ef=100, random_state=0
    ):
        self.n_neighbors = n_neighbors
        self.temperature = temperature
        self.algorithm = algorithm
        self.M = M
        self.ef_construction = ef_construction
        self.ef = ef
        self.random_state = random_state

    def fit(self, features: np.ndarray, labels: np.ndarray, expected_patches: int | None = None):
        """Start the bank with ``features`` ``(n, d)`` (unit rows) and ``labels`` ``(n, C)`` (rows summing to 1).

        ``expected_patches`` (default ``n``): the size the bank will reach
        through :meth:`partial_fit`, which ``algorithm="auto"`` decides on.
        """
        self.n_classes_ = int(labels.shape[1])
        self._labels = []
        self.n_patches_ = 0
        self.index_ = PatchIndex(
            self.algorithm, M=self.M, ef_construction=self.ef_construction, ef=self.ef, random_state=self.random_state
        )
        self.index_.fit(np.empty((0, features.shape[1]), np.float32), expected_rows=expected_patches or len(features))
        return self.partial_fit(features, labels)

    def partial_fit(self, features: np.ndarray, labels: np.ndarray):
        """Add patches."""
        labels = np.asarray(labels, dtype=np.float32)
        if labels.ndim != 2 or labels.shape != (len(features), self.n_classes_):
            raise ValueError(f"labels must be ({len(features)}, {self.n_classes_}); got {labels.shape}.")
        self.index_.partial_fit(features)
        self._labels.append(labels)
        self.n_patches_ += len(features)
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class scores ``(q, C)`` of query patches (rows sum to 1)."""
        k = int(self.n_neighbors)
        if k > self.n_patches_:
            raise ValueError(f"n_neighbors={k} exceeds the {self.n_patches_} patches of the memory bank.")
        similarities, indices = self.index_.search(features, k)
        logits = similarities / float(self.temperature)
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        weights /= weights.sum(axis=1, keepdims=True)
        return np.einsum("qk,qkc->qc", weights, self.labels_[indices]).astype(np.float32)

    @property
    def labels_(self) -> np.ndarray:
        """``(n_patches_, n_classes_)`` label distributions of the stored patches."""
        if len(self._labels) != 1:
            self._labels = [np.concatenate(self._labels)]
        return self._labels[0]
