"""The progress bars of ``skfungi extract``: one per stage, counting samples, with the time left.

The extractor reports every sample it finishes (see
:func:`skfungi._utils.progress.progress_listener`): ``"fit"`` for each sample of
SimCLR's negative bank encoded by ``fit``, ``"transform"`` for the samples
whose features are done. A :class:`ProgressBars` is that listener: it moves
the bar of the stage. The fit's bar shows from the bank's first sample (so
that loading the backbone does not count in its rate), the extraction's from
its start.
"""

from __future__ import annotations

import sys

__all__ = ["ProgressBars"]


class ProgressBars:
    """tqdm bars on stderr, one per stage, moved by the extractor's progress reports.

    Parameters
    ----------
    unit : str
        What a sample is called on the bars (``"image"``, ``"text"``).
    disable : bool
        Show nothing (``--quiet``).
    """

    def __init__(self, unit: str, disable: bool = False):
        self.unit = unit
        self.disable = disable
        self._expected = {}
        self._bars = {}

    def open(self, stage: str, description: str, total: int, initial: int = 0, unit: str | None = None) -> None:
        """Show a bar for ``stage`` now: ``total`` samples (or units: ``unit``), ``initial`` of them done."""
        self._bars[stage] = self._bar(description, total, initial, unit)

    def expect(self, stage: str, description: str, total: int) -> None:
        """Show the bar of ``stage`` at its first report (work before it, such as loading a model, is not
        counted in its rate)."""
        self._expected[stage] = (description, total)

    def __call__(self, stage: str, n_samples: int) -> None:
        if stage in self._expected:
            self._bars[stage] = self._bar(*self._expected.pop(stage), initial=n_samples)
        elif stage in self._bars:
            self._bars[stage].update(n_samples)

    def _bar(self, description: str, total: int, initial: int, unit: str | None = None):
        from tqdm import tqdm

        return tqdm(
            desc=description,
            total=total,
            initial=initial,
            unit=unit or self.unit,
            disable=self.disable,
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def close(self, stage: str) -> None:
        self._expected.pop(stage, None)
        bar = self._bars.pop(stage, None)
        if bar is not None:
            bar.close()

    def close_all(self) -> None:
        for stage in list(self._bars) + list(self._expected):
            self.close(stage)
