"""What the ``skfungi`` command shows on the terminal, and how it stops.

- :func:`log_to_stderr`: skfungi's log messages on stderr (``skfungi: ...``).
- :func:`third_parties_silenced`: the progress bars, log messages and
  warnings of the libraries the backbones come from (Hugging Face's
  "Loading weights" bars and download bars, timm's and torch's warnings) kept
  off the terminal; skfungi's own warnings still show.
- :func:`signals_as_exceptions`: SIGTERM raised as :class:`Terminated` (like
  Ctrl-C raises ``KeyboardInterrupt``), so that an extraction that is stopped
  releases its lock and says how to continue.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from .._utils.quiet import IMPORTED_TO_MUTE, LIBRARIES, muted

__all__ = ["Terminated", "log_to_stderr", "signals_as_exceptions", "third_parties_silenced"]

# Read by huggingface_hub and transformers when they are imported (later, inside the command)
QUIET_ENVIRONMENT = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_VERBOSITY": "error",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}
# loggers of libraries other than the model libraries (those are muted by skfungi._utils.quiet)
OTHER_LOGGERS = ("transformers", "huggingface_hub", "torch", "torchvision", "PIL", "urllib3", "filelock")


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM."""


@contextmanager
def log_to_stderr(quiet: bool, verbose: bool = False) -> Iterator[None]:
    """The ``skfungi`` loggers' messages on stderr while the command runs.

    The command's own messages (``skfungi.cli``) from INFO, the library's
    from WARNING (from INFO too when ``verbose``); WARNING and above only when
    ``quiet``.
    """
    level = logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("skfungi: %(message)s"))
    handler.setLevel(level)
    if not verbose:
        handler.addFilter(lambda record: record.levelno >= logging.WARNING or record.name.startswith("skfungi.cli"))
    package_logger = logging.getLogger("skfungi")
    previous_level = package_logger.level
    package_logger.addHandler(handler)
    package_logger.setLevel(level)
    try:
        yield
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)


@contextmanager
def third_parties_silenced() -> Iterator[None]:
    """Third-party progress bars, log messages below ERROR and warnings off the terminal during the block.

    The model libraries already imported are muted through their own switches
    (:func:`skfungi._utils.quiet.muted`, the library's one way); those imported
    inside the block read the environment variables set here. Everything is
    restored at the end.
    """
    saved_environment = {name: os.environ.get(name) for name in QUIET_ENVIRONMENT}
    os.environ.update(QUIET_ENVIRONMENT)
    switched = tuple(name for name in LIBRARIES if name not in IMPORTED_TO_MUTE or name in sys.modules)
    try:
        with muted(switched, OTHER_LOGGERS), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.filterwarnings("default", module=r"skfungi(\.|$)")
            yield
    finally:
        for name, value in saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` in the main thread during the block (elsewhere: no change)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
