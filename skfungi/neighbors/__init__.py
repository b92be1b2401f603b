"""Approximate nearest neighbours at scale: :class:`HNSWTransformer` (hnswlib behind scikit-learn's
``KNeighborsTransformer`` contract)."""

from .hnsw import HNSWTransformer

__all__ = ["HNSWTransformer"]
