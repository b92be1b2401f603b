"""Parameter constraints in scikit-learn's ``_parameter_constraints`` language, and what it lacks.

scikit-learn's ``Interval(Integral, ...)`` accepts ``True`` and ``False`` (a
``bool`` is an ``Integral``, hence a ``Real``, in Python), so
``batch_size=True`` would pass as 1; :func:`int_range` and :func:`real_range`
are the same intervals with booleans refused. :func:`whole_range` is for
counts that physical data carries as floats (a sample rate of ``8000.0``):
whole numbers of any numeric type, fractions refused.
"""

from __future__ import annotations

from numbers import Integral, Real

from .sklearn_compat import Interval

__all__ = ["int_range", "real_range", "whole_range"]


class _NoBoolInterval(Interval):
    def is_satisfied_by(self, val) -> bool:
        return not isinstance(val, bool) and super().is_satisfied_by(val)


class _WholeNumberInterval(_NoBoolInterval):
    def is_satisfied_by(self, val) -> bool:
        return super().is_satisfied_by(val) and (isinstance(val, Integral) or float(val).is_integer())

    def __str__(self) -> str:
        return super().__str__().replace("a float", "an int or a whole float (8000.0)", 1)


def int_range(low: int | None, high: int | None = None) -> Interval:
    """The ints in ``[low, high]`` (``None``: no bound on that side), booleans excluded.

    Examples
    --------
    >>> from skfungi._utils.validation import int_range
    >>> positive = int_range(1)
    >>> positive.is_satisfied_by(3), positive.is_satisfied_by(True), positive.is_satisfied_by(0)
    (True, False, False)
    """
    closed = {(True, True): "both", (True, False): "left", (False, True): "right", (False, False): "neither"}[
        (low is not None, high is not None)
    ]
    return _NoBoolInterval(Integral, low, high, closed=closed)


def real_range(low: float | None, high: float | None, closed: str = "neither") -> Interval:
    """The real numbers between ``low`` and ``high`` (``closed`` as in scikit-learn), booleans excluded."""
    return _NoBoolInterval(Real, low, high, closed=closed)


def whole_range(low: int | None, high: int | None = None) -> Interval:
    """The whole numbers in ``[low, high]``: ints, numpy integers or floats without a fraction (``8000.0``).

    Booleans, fractions (``8000.5``), NaN and infinities are refused.

    Examples
    --------
    >>> from skfungi._utils.validation import whole_range
    >>> rate = whole_range(1)
    >>> rate.is_satisfied_by(8000.0), rate.is_satisfied_by(8000.5), rate.is_satisfied_by(True)
    (True, False, False)
    """
    closed = {(True, True): "both", (True, False): "left", (False, True): "right", (False, False): "neither"}[
        (low is not None, high is not None)
    ]
    return _WholeNumberInterval(Real, low, high, closed=closed)
