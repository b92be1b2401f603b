"""What the model libraries print while a spec loads: nothing by default, everything with ``verbose > 0``.

timm, open_clip, transformers, sentence-transformers and the Hugging Face Hub
client report their loading on their own: transformers draws a "Loading
weights" progress bar at every load (four times in one cross-validation),
open_clip logs ``ERROR:root:Failed to download weights ...`` before the
error skfungi raises with the same facts, timm logs at INFO. :func:`muted`
silences the libraries it is given for one block and restores each library's
own settings afterwards, through the libraries' public switches (a logger's
level, transformers' verbosity and progress bar, the Hub client's progress
bars). open_clip logs on the root logger itself, so a filter on the root
logger (which sees records logged on it, never those that other loggers
propagate) drops the records of open_clip's files only; a temporary
``NullHandler`` keeps ``logging.error()`` from installing its stderr handler
for good (``logging.basicConfig``). An environment variable that decides the
Hub's progress bars (``HF_HUB_DISABLE_PROGRESS_BARS``) is left to decide.

The switches are process-wide while the block runs: another thread's logs
from the same libraries are muted during a load too.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

__all__ = ["IMPORTED_TO_MUTE", "LIBRARIES", "muted"]


@contextmanager
def _hub_progress_bars() -> Iterator[None]:
    from huggingface_hub import constants
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    if constants.HF_HUB_DISABLE_PROGRESS_BARS is not None:  # the environment decides, and has priority
        yield
        return
    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        (disable_progress_bars if was_disabled else enable_progress_bars)()


@contextmanager
def _transformers() -> Iterator[None]:
    """transformers' verbosity at ERROR and its progress bars off (its switch also turns the Hub's off and on)."""
    from huggingface_hub import constants
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    bars = transformers_logging.is_progress_bar_enabled() and constants.HF_HUB_DISABLE_PROGRESS_BARS is None
    transformers_logging.set_verbosity_error()
    if bars:
        transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        if bars:
            transformers_logging.enable_progress_bar()


@contextmanager
def _logger_at_error(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextmanager
def _root_records_of(package: str) -> Iterator[None]:
    """Drop the records that ``package``'s files log straight on the root logger."""
    folder = os.path.join(os.path.dirname(importlib.util.find_spec(package).origin), "")
    root = logging.getLogger()

    def keep(record: logging.LogRecord) -> bool:
        return not record.pathname.startswith(folder)

    placeholder = logging.NullHandler() if not root.handlers else None
    root.addFilter(keep)
    if placeholder is not None:
        root.addHandler(placeholder)
    try:
        yield
    finally:
        root.removeFilter(keep)
        if placeholder is not None:
            root.removeHandler(placeholder)


# Entered in this order: the Hub's bars before transformers' switch, which turns them on again on its way out.
_MUTERS = {
    "huggingface_hub": _hub_progress_bars,
    "transformers": _transformers,
    "sentence_transformers": lambda: _logger_at_error("sentence_transformers"),
    "timm": lambda: _logger_at_error("timm"),
    "open_clip": lambda: _root_records_of("open_clip"),
}
LIBRARIES = tuple(_MUTERS)
# the libraries muted through their own calls, which import them (the others are muted by name)
IMPORTED_TO_MUTE = ("huggingface_hub", "transformers")


@contextmanager
def muted(libraries: tuple[str, ...], loggers: tuple[str, ...] = ()) -> Iterator[None]:
    """Silence the logs and progress bars of ``libraries`` (names of :data:`LIBRARIES`), and the messages below
    ERROR of the other ``loggers``, inside the block."""
    with ExitStack() as stack:
        for name, muter in _MUTERS.items():
            if name in libraries:
                stack.enter_context(muter())
        for name in loggers:
            stack.enter_context(_logger_at_error(name))
        yield
