"""Defaults of the command's options, torch-free: the parser shows them, the commands apply them.

The options that fix the fit are None in the parser (so that ``--transformer``
can refuse them when given); a command reads the default from here. The
library's own defaults (views, layer, precision, the paper's losses) come from
:mod:`skfungi._defaults`, never written again here.
"""

from __future__ import annotations

from .. import _defaults

__all__ = [
    "BATCH_SIZE",
    "CHUNK_SIZE",
    "COMMAND_LOSSES",
    "EVALUATE_BATCH_SIZE",
    "EVALUATE_FIT_SAMPLES",
    "EVALUATE_PROTOCOLS",
    "EVALUATE_SPLITS",
    "EVALUATE_TEST_SIZE",
    "FIT_SAMPLES",
    "INDEX_BATCH_SIZE",
    "INDEX_PARAMETERS",
    "INDEX_SEED",
    "LAYER",
    "LOSSES",
    "PRECISION",
    "PROJECTION",
    "PROJECTION_CHOICES",
    "PROTOCOL_CHOICES",
    "SEED",
    "VIEWS",
    "num_threads",
    "paper_losses",
]

LOSSES = _defaults.LOSSES
VIEWS = _defaults.VIEWS
LAYER = _defaults.LAYER
PRECISION = _defaults.PRECISION
paper_losses = _defaults.paper_losses


def num_threads(threads: int | None):
    """The transformer's ``num_threads`` for ``--threads``: the count asked for, else the library's rule."""
    return _defaults.NUM_THREADS if threads is None else threads


SEED = 0  # the command's features are repeatable by default (the library's random_state is None)
FIT_SAMPLES = 64  # the reference implementation's bank size
BATCH_SIZE = 8
CHUNK_SIZE = 64
# the blocks --losses takes: the gradient blocks, and the no-gradient controls of the losses with several views
COMMAND_LOSSES = ("kl", "dino", "simclr", "dino_views", "simclr_views")

# skfungi evaluate: the library's defaults (skfungi.evaluation.evaluate), and the choices its options list
# without importing the library (tests check that they equal the library's)
EVALUATE_SPLITS = _defaults.EVALUATION_SPLITS
EVALUATE_TEST_SIZE = _defaults.EVALUATION_TEST_SIZE
EVALUATE_FIT_SAMPLES = _defaults.EVALUATION_FIT_SAMPLES
EVALUATE_PROTOCOLS = _defaults.EVALUATION_PROTOCOLS
EVALUATE_BATCH_SIZE = 32  # FungiTransformer's
PROTOCOL_CHOICES = ("knn", "knn_no_pca", "linear_probe", "few_shot_knn", "kmeans")
PROJECTION_CHOICES = ("srht", "rademacher", "gaussian", "kronecker")
PROJECTION = _defaults.PROJECTION

# skfungi index: HNSWTransformer's own defaults (tests/test_cli_index.py checks that they are the estimator's), and
# a fixed seed so that a rebuilt index is the same graph
INDEX_PARAMETERS = {"n_neighbors": 5, "metric": "euclidean", "M": 16, "ef_construction": 200, "ef": 100, "n_jobs": None}
INDEX_SEED = 0
INDEX_BATCH_SIZE = 10_000  # rows read from the Parquet input and added to the index at a time
