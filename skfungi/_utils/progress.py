"""Progress of long computations, reported to whoever listens (the command line's bars).

The extractor reports every sample it finishes, in ``fit`` (the negative
bank's samples) and in ``transform``; :func:`progress_listener` installs a
callback for the duration of a ``with`` block, in this thread or task only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["SampleCounter", "listening", "progress_listener", "report_progress"]

_listener: ContextVar[Callable[[str, int], None] | None] = ContextVar("skfungi_progress", default=None)


@contextmanager
def progress_listener(callback: Callable[[str, int], None]) -> Iterator[None]:
    """Call ``callback(stage, n_samples)`` as samples are finished inside the block.

    ``stage`` is ``"fit"`` (a sample of a negative bank encoded) or ``"transform"``
    (samples whose features are computed).
    """
    if not callable(callback):
        raise TypeError(
            f"progress_listener's callback must be a function of (stage, n_samples), got {type(callback).__name__} "
            f"{callback!r}."
        )
    token = _listener.set(callback)
    try:
        yield
    finally:
        _listener.reset(token)


def listening() -> bool:
    """Whether a listener shows the progress (then the library draws no bars of its own)."""
    return _listener.get() is not None


def report_progress(stage: str, n_samples: int) -> None:
    """Tell the listener, if any, that ``n_samples`` more samples of ``stage`` are done."""
    callback = _listener.get()
    if callback is not None:
        callback(stage, n_samples)


class SampleCounter:
    """Progress through a stage's samples, advanced by fractions, reported in whole samples.

    A batch runs its blocks one after the other, and each block's views one
    group of samples at a time; advancing by each group's share of a sample's
    work (its views over all the sample's views) moves a bar image by image
    even when a batch holds many images. ``bar`` is a tqdm bar or None.
    """

    def __init__(self, stage: str, bar=None):
        self.stage = stage
        self.bar = bar
        self._done = 0.0
        self._reported = 0

    def advance(self, samples: float) -> None:
        """``samples`` more (a fraction of a sample's work counts as that fraction)."""
        self._done += samples
        self._report(int(self._done + 1e-9))

    def reach(self, samples: int) -> None:
        """Exactly ``samples`` done (the end of a batch: no rounding carries over)."""
        self._done = float(samples)
        self._report(samples)

    def _report(self, whole: int) -> None:
        step = whole - self._reported
        if step > 0:
            self._reported = whole
            if self.bar is not None:
                self.bar.update(step)
            report_progress(self.stage, step)
