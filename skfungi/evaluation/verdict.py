"""Each gradient feature set against its matched control and against the best no-gradient alternative.

The *matched control* of a gradient feature set replaces each gradient block
by the mean embedding of the same views (:func:`~skfungi.evaluation.control_of`).
It can flatter the gradients: another no-gradient feature set that costs no
more (the SimCLR views alone, without the embedding and the DINO views, say)
may score higher. So every gradient set is also compared with the *best
no-gradient alternative*: among every feature set without gradients that
costs at most as much per sample (and the matched control, whatever its
cost), the one with the highest mean score. The verdict is stated on the
stronger of the two comparisons, the one with the smaller gain.

A difference counts ("GAIN" or "LOSS") only beyond the *spread*: the largest
of the standard deviations over splits of the two scores and of their paired
difference. Scores are paired split by split: the same train / test split
for both feature sets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .feature_sets import EMBEDDING, FeatureSet, control_of, is_gradient_set, set_label
from .scoring import primary_metric, protocol_label

__all__ = [
    "GAIN",
    "LOSS",
    "WITHIN",
    "Comparison",
    "FeatureSetResult",
    "best_alternative",
    "compare_paired",
    "mean_std",
    "recommend",
    "verdict",
]

GAIN, LOSS, WITHIN = "GAIN", "LOSS", "within spread"


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; 0 for one value).

    Examples
    --------
    >>> mean_std([1, 2, 3])
    (2.0, 1.0)
    """
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def verdict(gain: float, spread: float) -> str:
    """``GAIN`` / ``LOSS`` when the gain is beyond the spread, else ``within spread``.

    Examples
    --------
    >>> verdict(0.034, 0.01), verdict(0.005, 0.01), verdict(-0.02, 0.01)
    ('GAIN', 'within spread', 'LOSS')
    """
    if gain > spread:
        return GAIN
    if gain < -spread:
        return LOSS
    return WITHIN


@dataclass(frozen=True)
class Comparison:
    """A feature set against a reference, paired over the splits (fractions, not points).

    Attributes
    ----------
    reference : tuple of str
    gain, gain_std : float
        Mean and standard deviation over splits of (score - reference's score).
    wins : int
        Splits where the feature set scored strictly higher.
    n_splits : int
    spread : float
        The largest of the standard deviations of the two scores and of their difference.
    verdict : str
        ``GAIN``, ``LOSS`` or ``within spread``.
    """

    reference: FeatureSet
    gain: float
    gain_std: float
    wins: int
    n_splits: int
    spread: float
    verdict: str

    def to_dict(self) -> dict:
        return {
            "reference": list(self.reference),
            "gain": self.gain,
            "gain_std": self.gain_std,
            "wins": self.wins,
            "n_splits": self.n_splits,
            "spread": self.spread,
            "verdict": self.verdict,
        }


def compare_paired(ours, theirs, reference: FeatureSet) -> Comparison:
    """``ours`` against ``theirs``, split by split.

    Examples
    --------
    >>> c = compare_paired([0.88, 0.89, 0.87], [0.86, 0.87, 0.86], ("simclr_views",))
    >>> round(c.gain, 4), c.wins, c.verdict
    (0.0167, 3, 'GAIN')
    """
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape:
        raise ValueError(f"cannot pair {len(ours)} scores with {len(theirs)}.")
    gain, gain_std = mean_std(ours - theirs)
    spread = max(gain_std, mean_std(ours)[1], mean_std(theirs)[1])
    return Comparison(tuple(reference), gain, gain_std, int(np.sum(ours > theirs)), len(ours), spread,
                      verdict(gain, spread))  # fmt: skip


def best_alternative(
    feature_set: FeatureSet,
    means: Mapping[FeatureSet, float],
    costs: Mapping[FeatureSet, float],
    candidates: Sequence[FeatureSet],
    control: FeatureSet,
) -> FeatureSet:
    """The best-scoring no-gradient candidate that costs at most as much as ``feature_set`` (ties: cheaper).

    The matched ``control`` is always a candidate, whatever its measured cost.

    Examples
    --------
    >>> means = {("embedding", "dino_views", "simclr_views"): 0.852, ("simclr_views",): 0.869, ("embedding",): 0.80}
    >>> costs = {("embedding", "dino_views", "simclr_views"): 20.0, ("simclr_views",): 13.0, ("embedding",): 0.5}
    >>> costs[("embedding", "kl", "dino", "simclr")] = 70.0
    >>> best_alternative(("embedding", "kl", "dino", "simclr"), means, costs, list(means),
    ...                  ("embedding", "dino_views", "simclr_views"))
    ('simclr_views',)
    """
    limit = costs[feature_set] * (1 + 1e-9)
    eligible = [candidate for candidate in candidates if candidate == control or costs[candidate] <= limit]
    return max(eligible, key=lambda candidate: (means[candidate], -costs[candidate]))


@dataclass
class FeatureSetResult:
    """One scored feature set: its scores on every split, its cost, and its comparisons.

    Attributes
    ----------
    features : tuple of str
        Its blocks, concatenated in this order.
    requested : bool
        Asked for (a row of the table), rather than scored as a control or alternative.
    scores : dict
        ``scores[protocol][metric]``: one value per split (fractions).
    seconds_per_sample : float
        Extraction time of its blocks per sample (the sum of its blocks', each timed alone).
    cost_ratio : float
        ``seconds_per_sample`` over the embedding's.
    control : tuple of str or None
        Its matched no-gradient control (gradient sets only).
    comparisons : dict
        ``comparisons[protocol]`` is ``{"control": Comparison, "alternative": Comparison}`` (gradient sets only).
    """

    features: FeatureSet
    requested: bool
    scores: dict
    seconds_per_sample: float
    cost_ratio: float
    control: FeatureSet | None = None
    comparisons: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return set_label(self.features)

    @property
    def gradient(self) -> bool:
        return is_gradient_set(self.features)

    def mean_std(self, protocol: str) -> tuple[float, float]:
        """Mean and standard deviation over splits of the protocol's primary metric."""
        return mean_std(self.scores[protocol][primary_metric(protocol)])

    def stronger(self, protocol: str) -> Comparison | None:
        """The comparison with the smaller gain: the best alternative, or the control when they tie."""
        if not self.comparisons:
            return None
        pair = self.comparisons[protocol]
        return min((pair["control"], pair["alternative"]), key=lambda comparison: comparison.gain)

    def verdict(self, protocol: str) -> str | None:
        stronger = self.stronger(protocol)
        return None if stronger is None else stronger.verdict

    def disagreement(self, protocols: Sequence[str]) -> str | None:
        """Which protocols give which verdict, when they do not all give the same."""
        verdicts = {protocol: self.verdict(protocol) for protocol in protocols}
        if None in verdicts.values() or len(set(verdicts.values())) < 2:
            return None
        return "; ".join(f"{protocol_label(protocol)}: {found}" for protocol, found in verdicts.items())


def build_results(
    scores: Mapping[FeatureSet, dict],
    costs: Mapping[FeatureSet, float],
    requested: Sequence[FeatureSet],
    candidates: Sequence[FeatureSet],
    blocks: Sequence[str],
    protocols: Sequence[str],
) -> list[FeatureSetResult]:
    """One result per scored feature set, requested ones first, with both comparisons for each gradient set."""
    embedding_cost = costs[(EMBEDDING,)] if (EMBEDDING,) in costs else min(costs.values())
    results = []
    for feature_set in dict.fromkeys([*requested, *candidates]):
        result = FeatureSetResult(
            feature_set,
            feature_set in requested,
            scores[feature_set],
            costs[feature_set],
            costs[feature_set] / embedding_cost if embedding_cost > 0 else float("nan"),
        )
        if result.gradient:
            result.control = control_of(feature_set, blocks)
            for protocol in protocols:
                metric = primary_metric(protocol)
                ours = scores[feature_set][protocol][metric]
                means = {candidate: float(np.mean(scores[candidate][protocol][metric])) for candidate in candidates}
                alternative = best_alternative(feature_set, means, costs, candidates, result.control)
                result.comparisons[protocol] = {
                    "control": compare_paired(ours, scores[result.control][protocol][metric], result.control),
                    "alternative": compare_paired(ours, scores[alternative][protocol][metric], alternative),
                }
        results.append(result)
    return results


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def _against(result: FeatureSetResult, protocol: str) -> str:
    stronger = result.stronger(protocol)
    return (
        f"{_points(stronger.gain)} ± {100 * stronger.gain_std:.1f} points of {protocol_label(protocol)} against "
        f"{set_label(stronger.reference)} (spread {100 * stronger.spread:.1f}, {stronger.wins}/{stronger.n_splits} "
        "splits won)"
    )


def recommend(results: Sequence[FeatureSetResult], protocols: Sequence[str]) -> tuple[str, FeatureSet | None]:
    """The cheapest requested gradient set whose gain beats the spread on every protocol, in plain words.

    Returns
    -------
    text : str
        ``"Use ..."`` with the evidence, or ``"Keep the embedding: ..."`` with the reason.
    features : tuple of str or None
        The recommended gradient feature set, None for "keep the embedding".
    """
    primary = protocols[0]
    gradient = [result for result in results if result.requested and result.gradient]
    helping = [result for result in gradient if all(result.verdict(protocol) == GAIN for protocol in protocols)]
    if helping:
        chosen = min(helping, key=lambda result: result.seconds_per_sample)
        stronger = chosen.stronger(primary)
        text = (
            f"Use {chosen.label}: it beats {set_label(stronger.reference)}, the best feature set without gradients "
            f"that costs no more, by {_points(stronger.gain)} ± {100 * stronger.gain_std:.1f} points of "
            f"{protocol_label(primary)} (spread {100 * stronger.spread:.1f}; {stronger.wins}/{stronger.n_splits} "
            "splits won)"
        )
        text += "".join(f"; {protocol_label(p)}: {_points(chosen.stronger(p).gain)}" for p in protocols[1:])
        text += (
            f". It costs {1000 * chosen.seconds_per_sample:.3g} ms per sample, {chosen.cost_ratio:.3g}x the embedding."
        )
        return text, chosen.features
    text = (
        "Keep the embedding: no gradient feature set beats the best no-gradient feature set of equal or lower "
        "cost by more than the spread over splits" + (" on every protocol" if len(protocols) > 1 else "") + "."
    )
    if gradient:
        closest = max(gradient, key=lambda result: result.stronger(primary).gain)
        text += f" Closest: {closest.label}, {_against(closest, primary)}."
        split = [result for result in gradient if result.disagreement(protocols)]
        for result in split:
            text += f" The protocols disagree on {result.label} ({result.disagreement(protocols)})."
    text += _views_note(results, primary)
    return text, None


def _views_note(results: Sequence[FeatureSetResult], primary: str) -> str:
    """A no-gradient set that beats the embedding beyond the spread: the cheaper way to the views' gain."""
    embedding = next((result for result in results if result.features == (EMBEDDING,)), None)
    if embedding is None:
        return ""
    metric = primary_metric(primary)
    better = []
    for result in results:
        if result.gradient or result.features == (EMBEDDING,):
            continue
        comparison = compare_paired(result.scores[primary][metric], embedding.scores[primary][metric], (EMBEDDING,))
        if comparison.verdict == GAIN:
            better.append((result, comparison))
    if not better:
        return ""
    result, comparison = max(better, key=lambda item: item[1].gain)
    return (
        f" Without gradients, {result.label} beats the embedding by {_points(comparison.gain)} ± "
        f"{100 * comparison.gain_std:.1f} points (spread {100 * comparison.spread:.1f}) at "
        f"{result.cost_ratio:.3g}x its cost."
    )
