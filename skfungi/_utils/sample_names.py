"""Errors that name samples by position, told in the caller's own terms.

The library's errors name an offending sample by its position in the
collection it was given (``sample 3``, ``sample(s) 3, 7``, ``row(s) 3``). A
caller that hands it a part of its data, such as the fit samples held out of
``X`` or one chunk of an input folder, knows each position's own name: its
position in ``X``, or its file. :func:`samples_named` rewrites the positions
of an error raised inside it into those names, so that the message points at
the sample the user can find, not at a position in a part they never saw.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import contextmanager

__all__ = ["rename_samples", "samples_named"]

# "sample 3", "sample(s) 3, 7 and 2 more", "row(s) 3", "(first at sample 3, feature 2": the position lists only
_POSITIONS = re.compile(r"\b(sample|row)(\(s\))? (\d+(?:, \d+)*)")


def rename_samples(message: str, names: Sequence) -> str:
    """``message`` with every sample position ``i`` it names replaced by ``names[i]``.

    An int name is written as it is (a position in the caller's data), any
    other as a quoted string (a file). A position outside ``names`` is left
    as it is.

    Examples
    --------
    >>> rename_samples("sample 1 has 4 channels", [10, 42])
    'sample 42 has 4 channels'
    >>> rename_samples("the kl block of sample(s) 0, 1 is zero", ["a.png", "b/c.png"])
    "the kl block of sample(s) 'a.png', 'b/c.png' is zero"
    """

    def named(match: re.Match) -> str:
        positions = [int(number) for number in match.group(3).split(", ")]
        if not all(position < len(names) for position in positions):
            return match.group(0)
        told = ", ".join(_told(names[position]) for position in positions)
        return f"{match.group(1)}{match.group(2) or ''} {told}"

    return _POSITIONS.sub(named, message)


@contextmanager
def samples_named(names: Sequence | None):
    """Inside, a ``ValueError`` or ``TypeError`` naming samples by position names them by ``names`` instead.

    The error is raised again as the same type, chained to the original;
    None leaves errors as they are.
    """
    try:
        yield
    except (ValueError, TypeError) as error:
        if names is None:
            raise
        message = str(error)
        renamed = rename_samples(message, names)
        if renamed == message:
            raise
        raise _same_kind(error, renamed) from error


def _told(name) -> str:
    if isinstance(name, int) or (hasattr(name, "dtype") and name.dtype.kind in "iu"):
        return str(int(name))
    return repr(str(name))


def _same_kind(error: Exception, message: str) -> Exception:
    """An error of ``error``'s type with ``message`` (a ValueError or TypeError where the type takes more)."""
    try:
        return type(error)(message)
    except TypeError:
        return (ValueError if isinstance(error, ValueError) else TypeError)(message)
