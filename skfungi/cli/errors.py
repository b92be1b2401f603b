"""The errors the ``skfungi`` command reports in one line (``skfungi: error: ...``) without a traceback."""

from __future__ import annotations

__all__ = ["CommandError"]


class CommandError(ValueError):
    """An error of the command's arguments, inputs or partial results; the message says what to do."""
