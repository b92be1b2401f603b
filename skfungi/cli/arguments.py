"""The value types of the command's options (torch-free, as the parser): each refuses a wrong value with
the one line argparse prints (``--threads: expected a positive integer, got '0'``)."""

from __future__ import annotations

import argparse

from .._defaults import MAX_THREADS

__all__ = ["non_negative_int", "positive_int", "sample_size", "thread_count"]


def _int_at_least(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0, "non-negative")


def positive_int(text: str) -> int:
    return _int_at_least(text, 1, "positive")


def thread_count(text: str) -> int:
    """A positive count of torch threads that a machine can start (torch.set_num_threads(10**6) kills the
    process instead of raising)."""
    value = positive_int(text)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_THREADS} threads, got {text!r}")
    return value


def sample_size(text: str) -> int | float:
    """A fraction in (0, 1) or a count of samples."""
    try:
        value = float(text) if "." in text else int(text)
    except ValueError:
        value = 0
    if not (0 < value < 1 if isinstance(value, float) else value >= 1):
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1) or a number of samples, got {text!r}")
    return value
