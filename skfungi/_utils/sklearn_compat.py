"""scikit-learn's private names skfungi uses, imported in this one place.

skfungi validates its parameters the way scikit-learn's own estimators do
(``_parameter_constraints`` checked by ``_fit_context`` and
``validate_parameter_constraints``, with ``Interval``, ``StrOptions``...),
and names features as ``get_feature_names_out`` does. Those names are
private to scikit-learn and may move in a release, so setup.cfg bounds
scikit-learn to the releases they were checked with (``>=1.6,<1.10``) and
every other module imports them from here: a move is mended in one file,
and a release without them fails at import with the supported range in the
message, never later with a confusing error. ``tests/test_sklearn_compat.py``
checks the bound against the installed release and that no other module
imports them directly.
"""

from __future__ import annotations

SUPPORTED = "scikit-learn>=1.6,<1.10"

try:
    from sklearn.base import _fit_context
    from sklearn.utils._param_validation import (
        HasMethods,
        Interval,
        InvalidParameterError,
        Options,
        StrOptions,
        validate_parameter_constraints,
    )
    from sklearn.utils.validation import _check_feature_names_in
except ImportError as error:  # a scikit-learn release that moved them
    import sklearn

    raise ImportError(
        f"skfungi needs {SUPPORTED}; the installed scikit-learn {sklearn.__version__} lacks a name it uses "
        f"({error}). Install a supported release: pip install '{SUPPORTED}'."
    ) from error

__all__ = [
    "SUPPORTED",
    "HasMethods",
    "Interval",
    "InvalidParameterError",
    "Options",
    "StrOptions",
    "check_feature_names_in",
    "fit_context",
    "validate_parameter_constraints",
]

fit_context = _fit_context
check_feature_names_in = _check_feature_names_in
