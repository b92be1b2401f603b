"""The paper's downstream protocols on FUNGI features: PCA, kNN, linear probe, k-means, retrieval.

Everything here is plain scikit-learn underneath; the helpers only fix the
paper's settings so that results are comparable. One module
per protocol:

* :mod:`~skfungi.protocols.pca` -- **PCA** (:class:`CappedPCA`): full-SVD PCA
  fit on the training features, to ``min(512, n_features, n_train)``
  dimensions; no renormalisation afterwards.
* :mod:`~skfungi.protocols.knn` -- **kNN** (:func:`make_knn_classifier`,
  :func:`evaluate_knn`): k = 20, uniform vote, Euclidean distance on the PCA
  features; top-1 accuracy and mean-per-class accuracy (scikit-learn's
  ``balanced_accuracy_score``). The DINO-style vote (cosine similarity,
  weights ``exp(sim / 0.07)``) is ``vote="temperature"``; ``neighbors="hnsw"``
  swaps the exact search for :class:`~skfungi.neighbors.HNSWTransformer`.
  **Few-shot** (:func:`evaluate_few_shot_knn`, :func:`few_shot_indices`): the
  first ``n`` training samples per class, ``k = min(20, n)``.
* :mod:`~skfungi.protocols.probe` -- **Linear probe**
  (:class:`LinearProbeClassifier`, :func:`make_linear_probe`): multinomial
  logistic regression, L2, no intercept, the L2 strength ``lambda`` swept
  over ``linspace(5e-6, 5e-4, 5)`` on a validation split, then refit on
  train + validation.
* :mod:`~skfungi.protocols.clustering` -- **k-means** (:func:`evaluate_kmeans`):
  as many clusters as classes, adjusted mutual information and adjusted Rand index.
* :mod:`~skfungi.protocols.retrieval` -- **Retrieval** (:func:`retrieval_map`):
  mean average precision of a ranking by inner product on the PCA features.
* :mod:`~skfungi.protocols.blocks` -- **Blocks** (:class:`~skfungi.FungiBlockSelector`,
  :func:`feature_blocks`): the ``embedding``, ``kl``, ... blocks of features
  extracted once, found by their column names, to search the loss set cheaply.
"""

from .blocks import FungiBlockSelector, feature_blocks
from .clustering import evaluate_kmeans
from .knn import (
    PAPER_N_NEIGHBORS,
    TemperatureWeights,
    evaluate_few_shot_knn,
    evaluate_knn,
    few_shot_indices,
    make_knn_classifier,
)
from .pca import PAPER_PCA_DIMENSIONS, CappedPCA
from .probe import PAPER_L2_PENALTIES, LinearProbeClassifier, evaluate_linear_probe, make_linear_probe
from .retrieval import retrieval_average_precision, retrieval_map

__all__ = [
    "PAPER_L2_PENALTIES",
    "PAPER_N_NEIGHBORS",
    "PAPER_PCA_DIMENSIONS",
    "CappedPCA",
    "FungiBlockSelector",
    "LinearProbeClassifier",
    "TemperatureWeights",
    "evaluate_few_shot_knn",
    "evaluate_kmeans",
    "evaluate_knn",
    "evaluate_linear_probe",
    "feature_blocks",
    "few_shot_indices",
    "make_knn_classifier",
    "make_linear_probe",
    "retrieval_average_precision",
    "retrieval_map",
]
