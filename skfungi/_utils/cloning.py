"""scikit-learn's ``clone`` for estimators that hold a frozen model: the model is shared, never copied.

``sklearn.base.clone`` deep-copies any parameter that is not an estimator,
so the clone of a transformer given a 300 MB module would copy the module,
once per cross-validation fold and grid point. The model is frozen (skfungi
never changes it), so sharing it is safe. Every other parameter is cloned
as scikit-learn clones it, and the output configuration of ``set_output``
is kept, as ``clone`` keeps it.
"""

from __future__ import annotations

import copy

from sklearn.base import clone

__all__ = ["clone_sharing"]


def clone_sharing(estimator, shared: tuple[str, ...]):
    """A clone of ``estimator`` in which the parameters named in ``shared`` are the same objects, unless
    they are estimators themselves (those are cloned, by their own ``__sklearn_clone__``)."""
    params = estimator.get_params(deep=False)
    cloned = type(estimator)(
        **{
            name: value if name in shared and not hasattr(value, "get_params") else clone(value, safe=False)
            for name, value in params.items()
        }
    )
    if hasattr(estimator, "_sklearn_output_config"):
        cloned._sklearn_output_config = copy.deepcopy(estimator._sklearn_output_config)
    return cloned
