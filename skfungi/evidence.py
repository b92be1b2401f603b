"""Removed: ``skfungi.evidence`` moved out of the package. Any of its former names imported from it raises an
ImportError that says where it went.

* Measuring FUNGI on your own data (every block against its no-gradient
  control, on random splits, with a verdict): :func:`skfungi.evaluation.evaluate`,
  or ``skfungi evaluate`` from the shell; pairing two runs:
  :func:`skfungi.evaluation.compare_runs`.
* The project's three evidence pairs (MobileNetV2 x Fashion-MNIST, MiniLM x
  Rotten Tomatoes, Resemblyzer x spoken prompts): ``benchmarks/evidence/`` of
  the repository, run by ``benchmarks/accuracy.py`` (see docs/benchmarks.md).
"""

from __future__ import annotations

__all__: list[str] = []

MOVED = (
    "skfungi.evidence was removed. To measure FUNGI on your own data use skfungi.evaluation.evaluate (or the "
    "command `skfungi evaluate`), and skfungi.evaluation.compare_runs to pair two runs; the project's three "
    "evidence pairs live in the repository's benchmarks/evidence, run by benchmarks/accuracy.py (docs/evaluate.md, "
    "docs/benchmarks.md)."
)


# the names the module had: importing one says where it went (other names are simply absent)
FORMER_NAMES = frozenset(
    """N_NEIGHBORS PCA_DIM SHOTS HEADLINE_SHOTS EXACT_PCA_MAX_WIDTH EXACT_SVD_MAX_SAMPLES FASHION_MNIST_DIR
    ASTERISK_DIR LANGUAGES ROTTEN_TOMATOES_FILE LOSS_LABELS MissingAssetError Pair vision_pair vision_losses
    rotten_tomatoes_texts text_pair asterisk_clips audio_pair QUICK_SIZES Block extract_blocks combinations
    control_of label feature_sets pca_solver few_shot_neighbors knn_scores first_per_class pca_reduce
    few_shot_scores evaluate_split headline_sets check_pca run_pair summarise verdict format_result
    plot_few_shot build_pairs pair_options main main_with_args report_from""".split()
)


def __getattr__(name: str):
    if name in FORMER_NAMES:
        raise ImportError(f"cannot import {name!r}: {MOVED}")
    raise AttributeError(f"module 'skfungi.evidence' has no attribute {name!r}: {MOVED}")
