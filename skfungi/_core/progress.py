"""Progress of long computations, reported to whoever listens (the command line's bars).

The extractor reports every sample it finishes, in ``fit`` (the negative
bank's samples) and in ``transform``; :func:`progress_listener` installs a
callback for the duration of a ``with`` block, in this thread or task only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["progress_listener", "report_progress"]

_listener: ContextVar[Callable[[str, int], None] | None] = ContextVar("skfungi_progress", default=None)


@contextmanager
def progress_listener(callback: Callable[[str, int], None]) -> Iterator[None]:
    """Call ``callback(stage, n_samples)`` as samples are finished inside the block.

    ``stage`` is ``"fit"`` (a sample of a negative bank encoded) or ``"transform"``
    (samples whose features are computed).
    """
    token = _listener.set(callback)
    try:
        yield
    finally:
        _listener.reset(token)


def report_progress(stage: str, n_samples: int) -> None:
    """Tell the listener, if any, that ``n_samples`` more samples of ``stage`` are done."""
    callback = _listener.get()
    if callback is not None:
        callback(stage, n_samples)
