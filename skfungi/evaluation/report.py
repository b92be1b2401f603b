"""What an evaluation found: :class:`EvaluationReport`, as a terminal table, a JSON document and a picture."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .feature_sets import FeatureSet, set_label
from .schema import SCHEMA_VERSION
from .scoring import Split, primary_metric, protocol_label
from .store import Block
from .verdict import FeatureSetResult

__all__ = ["SCHEMA_VERSION", "TABLE_WIDTH", "EvaluationReport"]

TABLE_WIDTH = 88
_LABEL, _SCORE, _GAIN, _WINS, _COST = 42, 11, 11, 5, 11


def _pm(mean: float, std: float, signed: bool = False) -> str:
    return f"{100 * mean:{'+' if signed else ''}.1f} ± {100 * std:.1f}"


def _ms(seconds: float) -> str:
    milliseconds = 1000 * seconds
    digits = 2 if milliseconds < 10 else 1 if milliseconds < 100 else 0
    return f"{milliseconds:.{digits}f}"


def _ratio(ratio: float) -> str:
    return f"{ratio:.2g}x" if ratio < 10 else f"{ratio:.0f}x"


def _fit(text: str, width: int) -> str:
    """``text`` in ``width`` columns: ``a + b`` squeezed to ``a+b``, then cut with an ellipsis."""
    if len(text) > width:
        text = text.replace(" + ", "+")
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass
class EvaluationReport:
    """The result of :func:`~skfungi.evaluation.evaluate`.

    Attributes
    ----------
    results : list of FeatureSetResult
        Every scored feature set: the requested ones first, then the
        no-gradient sets scored as controls and alternatives.
    recommendation : str
        The verdict in plain words.
    recommended : tuple of str or None
        The recommended gradient feature set, None for "keep the embedding".
    protocols : list of str
        The protocols scored; the first one is the table's and the picture's.
    splits : list of Split
    blocks : dict of str to Block
        The extracted blocks, features included (not written to the JSON).
    settings, data, timing : dict
        What was evaluated, on what, and how long it took (see :meth:`to_dict`).
    estimate : dict or None
        The expected extraction time given before extracting.
    """

    results: list[FeatureSetResult]
    recommendation: str
    recommended: FeatureSet | None
    protocols: list[str]
    splits: list[Split]
    blocks: dict[str, Block]
    settings: dict
    data: dict
    timing: dict = field(default_factory=dict)
    estimate: dict | None = None

    def result(self, features: Sequence[str]) -> FeatureSetResult:
        """The result of a feature set, by its blocks."""
        for result in self.results:
            if result.features == tuple(features):
                return result
        raise KeyError(f"feature set {tuple(features)} was not scored.")

    # -- the terminal table ------------------------------------------------------------

    def table(self, protocol: str | None = None) -> str:
        """The results as plain text of at most 88 columns (every protocol, or one).

        For each requested feature set: its score (mean ± std over splits)
        and cost; under each gradient set, its matched control and (when
        another) the best no-gradient alternative of equal or lower cost,
        with the paired gain and the splits won; the verdict, on the stronger
        comparison, stands on the set's own line.
        """
        chosen = self.protocols if protocol is None else [protocol]
        parts = [self._protocol_table(name) for name in chosen]
        parts.append(self._legend())
        parts.append(self._block_table())
        return "\n\n".join(parts)

    def _protocol_table(self, protocol: str) -> str:
        n_train, n_test = self.splits[0].to_dict()["n_train"], self.splits[0].to_dict()["n_test"]
        title = (
            f"{protocol_label(protocol)} (%) on {self.data.get('name', 'the data')}, mean ± std over "
            f"{len(self.splits)} splits of {n_train} train / {n_test} test"
        )
        header = (
            f"{'feature set':<{_LABEL}} {'score':>{_SCORE}}  {'gain':>{_GAIN}}  {'wins':>{_WINS}}  "
            f"{'ms (x emb)':>{_COST}}"
        )
        lines = [*_wrap(title), header, "-" * TABLE_WIDTH]
        others = len(self.protocols) > 1
        for result in self.results:
            if not result.requested:
                continue
            verdict = result.verdict(protocol)
            disagree = others and result.disagreement(self.protocols)
            marked = "" if verdict is None else verdict + ("*" if disagree else "")
            lines.append(self._line(_fit(result.label, _LABEL), result, protocol, f"{marked:<{_GAIN + _WINS + 2}}"))
            if not result.comparisons:
                continue
            pair = result.comparisons[protocol]
            references = [("control", pair["control"])]
            if pair["alternative"].reference != pair["control"].reference:
                references.append(("best alt.", pair["alternative"]))
            for role, comparison in references:
                prefix = f"  {role}: "
                label = prefix + _fit(set_label(comparison.reference), _LABEL - len(prefix))
                gain = _pm(comparison.gain, comparison.gain_std, signed=True)
                wins = f"{comparison.wins}/{comparison.n_splits}"
                lines.append(
                    self._line(label, self.result(comparison.reference), protocol, f"{gain:>{_GAIN}}  {wins:>{_WINS}}")
                )
        return "\n".join(lines)

    def _line(self, label: str, result: FeatureSetResult, protocol: str, middle: str) -> str:
        score = _pm(*result.mean_std(protocol))
        cost = f"{_ms(result.seconds_per_sample)} ({_ratio(result.cost_ratio)})"
        return f"{label:<{_LABEL}} {score:>{_SCORE}}  {middle}  {cost:>{_COST}}".rstrip()

    def _legend(self) -> str:
        text = (
            "gain: score minus the reference's, paired split by split (mean ± std); wins: splits where the set "
            "scored higher. control: the same views' mean embedding in place of each gradient block (no "
            "gradient); best alt.: the best-scoring set without gradients that costs no more. Verdict, on the "
            "stronger comparison: GAIN or LOSS beyond the spread (the largest std of the two scores and of "
            "their difference), else within spread"
            + ("; * the protocols disagree" if len(self.protocols) > 1 else "")
            + ". ms: extraction time per sample of the set's blocks, each timed alone (x: over the embedding's)."
        )
        return "\n".join(_wrap(text))

    def _block_table(self) -> str:
        lines = [f"{'block':<16} {'width':>6} {'fit s':>7} {'ms/sample':>10}", "-" * 42]
        for block in self.blocks.values():
            stored = "  (stored)" if block.stored else ""
            lines.append(
                f"{set_label((block.name,)):<16} {block.width:>6} {block.fit_seconds:>7.1f} "
                f"{_ms(block.seconds_per_sample):>10}{stored}"
            )
        return "\n".join(lines)

    def summary(self) -> str:
        """:meth:`table` followed by the recommendation, as the command prints it."""
        return self.table() + "\n\n" + "\n".join(_wrap(self.recommendation))

    # -- the JSON document -------------------------------------------------------------

    def to_dict(self) -> dict:
        """The report as a JSON-ready dict; its schema is :data:`skfungi.evaluation.schema.SCHEMA`."""
        primary = self.protocols[0]
        rows = []
        for result in self.results:
            mean, std = result.mean_std(primary)
            row = {
                "features": list(result.features),
                "label": result.label,
                "gradient": result.gradient,
                "requested": result.requested,
                "mean": mean,
                "std": std,
                "scores": result.scores,
                "ms_per_sample": 1000 * result.seconds_per_sample,
                "cost_ratio": result.cost_ratio,
                "control": None,
                "gain": None,
                "gain_std": None,
                "wins": None,
                "alternative": None,
                "alternative_gain": None,
                "alternative_gain_std": None,
                "alternative_wins": None,
                "verdict": None,
                "verdicts": {},
                "comparisons": {},
                "disagreement": None,
            }
            if result.comparisons:
                control, alternative = (result.comparisons[primary][key] for key in ("control", "alternative"))
                row.update(
                    control=list(control.reference),
                    gain=control.gain,
                    gain_std=control.gain_std,
                    wins=control.wins,
                    alternative=list(alternative.reference),
                    alternative_gain=alternative.gain,
                    alternative_gain_std=alternative.gain_std,
                    alternative_wins=alternative.wins,
                    verdict=result.verdict(primary),
                    verdicts={protocol: result.verdict(protocol) for protocol in self.protocols},
                    comparisons={
                        protocol: {key: comparison.to_dict() for key, comparison in pair.items()}
                        for protocol, pair in result.comparisons.items()
                    },
                    disagreement=result.disagreement(self.protocols),
                )
            rows.append(row)
        return {
            "schema": SCHEMA_VERSION,
            "skfungi_version": self.settings.get("skfungi_version"),
            "data": self.data,
            "settings": self.settings,
            "protocols": list(self.protocols),
            "metrics": {protocol: primary_metric(protocol) for protocol in self.protocols},
            "splits": [split.to_dict() for split in self.splits],
            "blocks": [
                {
                    "name": block.name,
                    "width": block.width,
                    "fit_seconds": block.fit_seconds,
                    "ms_per_sample": 1000 * block.seconds_per_sample,
                    "stored": block.stored,
                    "key": block.key,
                }
                for block in self.blocks.values()
            ],
            "rows": rows,
            "recommendation": self.recommendation,
            "recommended": None if self.recommended is None else list(self.recommended),
            "estimate": self.estimate,
            "timing": self.timing,
        }

    def to_json(self, path=None) -> str:
        """The JSON document (:meth:`to_dict`); written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
        return text

    def plot(self, path=None, protocol: str | None = None):
        """Score against cost per sample, with error bars and the controls marked (see
        :func:`~skfungi.evaluation.plot.plot_report`); saved as PNG to ``path`` when given."""
        from .plot import plot_report

        return plot_report(self.to_dict(), path, protocol)


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(text, width=TABLE_WIDTH, break_long_words=False, break_on_hyphens=False)
