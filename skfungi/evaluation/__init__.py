"""Does FUNGI help on your data? Measure the gradient blocks against their no-gradient controls.

:func:`evaluate` is one call::

    from skfungi.evaluation import evaluate

    report = evaluate("skfungi:mobilenet_v2", images, labels, input_size=32)
    print(report.table())
    print(report.recommendation)
    report.to_json("report.json")
    report.plot("report.png")

It extracts every block once (the embedding, each gradient block, and each
no-gradient view block: the mean embedding of the same views), scores each
feature set with :mod:`skfungi.protocols` on random stratified splits, and
compares each gradient feature set, split by split, with its matched control
and with the best feature set without gradients that costs no more.
``skfungi evaluate`` is the same from the command line. One module per job:

* :mod:`~skfungi.evaluation.feature_sets` -- feature sets, their controls and names;
* :mod:`~skfungi.evaluation.store` -- blocks in memory and on disk (:class:`BlockStore`);
* :mod:`~skfungi.evaluation.pipeline` -- :func:`evaluate`, the whole evaluation;
* :mod:`~skfungi.evaluation.extraction` -- every block extracted once, and the expected time;
* :mod:`~skfungi.evaluation.scoring` -- random stratified splits and the protocols;
* :mod:`~skfungi.evaluation.verdict` -- the comparisons, the verdicts and the recommendation;
* :mod:`~skfungi.evaluation.report` -- :class:`EvaluationReport`: the table, the JSON, the picture;
* :mod:`~skfungi.evaluation.schema` -- the JSON's schema and its check;
* :mod:`~skfungi.evaluation.compare` -- two runs paired split by split (:func:`compare_runs`);
* :mod:`~skfungi.evaluation.demo_data` -- the demo's Fashion-MNIST sample as an ``.npz``.
"""

from .compare import RunComparison, compare_runs, load_report
from .extraction import Estimate, estimate_extraction, extract_blocks, plan_blocks
from .feature_sets import control_of, default_feature_sets, every_combination, parse_feature_sets, set_label
from .pipeline import evaluate
from .report import EvaluationReport
from .schema import SCHEMA, validate_report
from .scoring import PROTOCOLS, Split, draw_splits, score_feature_sets
from .store import Block, BlockStore
from .verdict import Comparison, FeatureSetResult, compare_paired, mean_std, recommend

__all__ = [
    "PROTOCOLS",
    "SCHEMA",
    "Block",
    "BlockStore",
    "Comparison",
    "Estimate",
    "EvaluationReport",
    "FeatureSetResult",
    "RunComparison",
    "Split",
    "compare_paired",
    "compare_runs",
    "control_of",
    "default_feature_sets",
    "draw_splits",
    "estimate_extraction",
    "evaluate",
    "every_combination",
    "extract_blocks",
    "load_report",
    "mean_std",
    "parse_feature_sets",
    "plan_blocks",
    "recommend",
    "score_feature_sets",
    "set_label",
    "validate_report",
]
