"""The library's defaults, in one place that imports nothing heavy.

:class:`~skfungi.FungiTransformer` takes its constructor's defaults from
here, and the command line (which must answer ``--help`` without importing
torch) reads the same values, so that a default is written once.
"""

from __future__ import annotations

__all__ = [
    "EVALUATION_FIT_SAMPLES",
    "EVALUATION_PROTOCOLS",
    "EVALUATION_SPLITS",
    "EVALUATION_TEST_SIZE",
    "LAYER",
    "LOSSES",
    "MAX_THREADS",
    "NUM_THREADS",
    "PRECISION",
    "PROJECTION",
    "VIEWS",
    "paper_losses",
]

# FungiTransformer's constructor defaults
LOSSES = "auto"
VIEWS = "paper"
LAYER = "auto"
PROJECTION = "srht"
PRECISION = "float32"
NUM_THREADS = "auto"
# the most threads num_threads takes: torch.set_num_threads(10**6) kills the process (a segmentation fault, or
# libgomp's "Thread creation failed" at 20 000 on a 2-core machine) instead of raising
MAX_THREADS = 1024

# skfungi.evaluation.evaluate's defaults (and skfungi evaluate's): the paper's kNN on 5 random
# stratified splits of 70% train / 30% test, transformers fitted on 64 samples held out of the data
EVALUATION_PROTOCOLS = ("knn",)
EVALUATION_SPLITS = 5
EVALUATION_TEST_SIZE = 0.3
EVALUATION_FIT_SAMPLES = 64

# the paper's losses per modality: DINO needs image crops, so text, audio and tabular rows take KL and SimCLR
_PAPER_LOSSES = {"image": ("kl", "dino", "simclr")}
_WITHOUT_CROPS = ("kl", "simclr")


def paper_losses(modality: str) -> tuple[str, ...]:
    """The loss names ``losses="auto"`` stands for with a backbone of ``modality``."""
    return _PAPER_LOSSES.get(modality, _WITHOUT_CROPS)
