"""Validate tabular inputs: 2-D arrays or DataFrames of numeric features, one row per sample.

Rows are validated as scikit-learn validates them (``validate_data``: NaN,
infinity, strings, sparse input and a changed number of features are
errors); NaN and infinite values, strings and image-shaped arrays get errors
that name where they are and say what to do.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils import check_array
from sklearn.utils.validation import validate_data

from .meta import refuse_meta

__all__ = ["as_rows"]


def as_rows(X, estimator=None, reset: bool = True) -> np.ndarray:
    """``X`` as a 2-D float array, validated as scikit-learn estimators validate their input.

    With an ``estimator``, scikit-learn's ``validate_data`` records (``reset=True``)
    or checks (``reset=False``) ``n_features_in_`` and ``feature_names_in_``.
    Strings, image-shaped arrays, NaN, infinity, sparse input and tensors on
    the meta device are errors.
    """
    if isinstance(X, torch.Tensor):
        refuse_meta(X, "X")
        X = X.detach().cpu().numpy()
    _refuse_strings_and_images(X)
    columns = list(X.columns) if hasattr(X, "columns") else None
    options = {"dtype": [np.float64, np.float32], "copy": False, "ensure_all_finite": False}
    rows = check_array(X, **options) if estimator is None else validate_data(estimator, X, reset=reset, **options)
    _refuse_non_finite(rows, columns)
    return rows


def _refuse_non_finite(rows: np.ndarray, columns: list | None) -> None:
    """Name the first NaN or infinite value (a missing cell of a DataFrame is NaN by now): its row and feature,
    which scikit-learn's own check leaves out."""
    bad = ~np.isfinite(rows)
    if not bad.any():
        return
    sample, feature = np.argwhere(bad)[0]
    name = repr(columns[feature]) if columns is not None else str(feature)
    raise ValueError(
        f"X contains NaN or infinite values (first at sample {sample}, feature {name}: {rows[sample, feature]}); "
        "the tabular backbone needs finite features: drop or impute such rows first (e.g. SimpleImputer)."
    )


def _refuse_strings_and_images(X) -> None:
    """Clear errors for text columns and image arrays, which ``check_array`` reports obscurely."""
    if hasattr(X, "columns") and hasattr(X, "dtypes"):  # a DataFrame
        text = [
            str(column)
            for column, values in X.items()
            if values.dtype.kind not in "biufcmM" and _holds_strings(values.to_numpy(dtype=object))
        ]
        if text:
            raise ValueError(
                f"column(s) {text} of X hold strings; the tabular backbone takes numeric features only. "
                "Encode them first (e.g. OneHotEncoder in a ColumnTransformer before FungiTransformer)."
            )
        return
    if isinstance(X, (list, tuple)):
        try:
            X = np.asarray(X)
        except (ValueError, TypeError):
            return  # ragged or odd lists: scikit-learn's own error follows
    if not isinstance(X, np.ndarray):
        return
    if X.ndim >= 3:
        raise ValueError(
            f"the tabular backbone takes a 2-D array or DataFrame (n_samples, n_features), got an array of shape "
            f"{X.shape}; images need an image backbone, fitted on images."
        )
    if X.dtype.kind in "USO" and _holds_strings(X):
        flat = np.flatnonzero(_is_string(X.reshape(-1)))[0]
        where = np.unravel_index(flat, X.shape)
        position = f"sample {where[0]}" + (f", feature {where[1]}" if X.ndim == 2 else "")
        raise ValueError(
            f"X holds strings (first at {position}: {X[where]!r}); the tabular backbone takes numeric features "
            "only. Encode them first (e.g. OneHotEncoder in a ColumnTransformer before FungiTransformer)."
        )


def _is_string(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "US":
        return np.ones(values.shape, dtype=bool)
    return np.frompyfunc(lambda value: isinstance(value, (str, bytes)), 1, 1)(values).astype(bool)


def _holds_strings(values: np.ndarray) -> bool:
    return values.size > 0 and bool(_is_string(values).any())
