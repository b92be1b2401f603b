"""Column forms of image, text and audio inputs: what a ``ColumnTransformer`` hands its transformers.

A ``ColumnTransformer`` gives a transformer one column of the user's table in
one of three forms: a pandas Series (column selected by a name), a one-column
DataFrame (selected by a list of one name), or a numpy object array of shape
``(n, 1)`` or ``(n,)`` (a numpy table). :func:`unwrap_column` turns each
form into the list of its values, for the adapters of the image, text and
audio modalities, and checks the values with errors that name the rows:

- missing values (``None``, NaN, ``pd.NA``, ``NaT``; for images also empty
  or blank paths) are refused, all at once and before any sample is
  decoded, in plain lists too;
- a column must hold one kind of value (texts, paths, arrays, tensors, PIL
  images, ...): a column mixing kinds is refused. Plain lists may mix kinds
  (an image list of arrays and PIL images, say), as they always could.

Tabular backbones never call it: for them a one-column DataFrame is a table
of one feature.
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np
import torch

__all__ = ["column_values", "is_missing", "unwrap_column"]

# Rows named in an error message before "and N more".
_ROWS_SHOWN = 10
_EXPECTED = {"image": "images", "text": "texts", "audio": "waveforms"}


def is_missing(value) -> bool:
    """True for ``None``, float NaN, ``pd.NA`` and ``NaT``."""
    if value is None:
        return True
    if isinstance(value, (float, np.floating)) and math.isnan(value):
        return True
    if isinstance(value, np.datetime64) and np.isnat(value):
        return True
    return type(value).__name__ in ("NAType", "NaTType")


def unwrap_column(X, modality: str, estimator=None, reset: bool = True):
    """The values of a column form of ``X`` as a list; other forms are returned as they are.

    Parameters
    ----------
    X : pandas Series, one-column DataFrame, numpy object array of shape (n, 1) or (n,), or any other form
        Column forms are unwrapped and their values checked (missing values,
        one kind of value). Lists and tuples are returned as they are after the
        missing-value check; arrays of other dtypes and tensors untouched.
    modality : {"image", "text", "audio"}
        The backbone's modality: it decides what counts as missing (empty
        paths for images; an empty string is a valid text) and the wording.
    estimator : estimator, optional
        With ``reset=True``, a 2-D column form records ``n_features_in_ = 1``
        on it and a DataFrame with a string column name ``feature_names_in_``
        (stale ones of an earlier fit are removed); with ``reset=False`` a
        DataFrame's column must carry the name recorded in ``fit``.
    reset : bool, default=True
        True in ``fit``, False in ``transform``.

    Returns
    -------
    values : list or the input
    """
    name, labels, values, two_d = _column_parts(X, modality)
    if estimator is not None:
        _record_column(estimator, X, name, two_d, reset)
    if values is None:
        if isinstance(X, (list, tuple)):
            _check_missing(list(X), modality, None, None)
        return X
    _check_missing(values, modality, name, labels)
    _check_one_kind(values, name, labels)
    return values


def column_values(X) -> list | None:
    """The values of a non-numeric column form of ``X`` (for modality inference), else None; never raises."""
    if hasattr(X, "columns") and (X.shape[1] != 1 or X.iloc[:, 0].dtype.kind in "biufcmM"):
        return None  # a table of numbers, or several columns
    if isinstance(X, np.ndarray) and X.ndim == 2 and X.shape[1] != 1:
        return None
    return _column_parts(X, "text")[2]


# -- internals ------------------------------------------------------------------------


def _column_parts(X, modality: str):
    """(column name, index labels, values, is 2-D) of a column form; values is None for other forms."""
    expected = _EXPECTED[modality]
    if hasattr(X, "columns") and hasattr(X, "iloc"):  # a DataFrame
        if X.shape[1] != 1:
            column = X.columns[0] if X.shape[1] else "text"
            raise ValueError(
                f"X is a DataFrame with {X.shape[1]} columns {list(X.columns)[:5]}; {_a(modality)} backbone takes "
                f"one column of {expected}: select it, e.g. X[{column!r}] or, in a ColumnTransformer, "
                f"(name, FungiTransformer(...), {column!r})."
            )
        column = X.iloc[:, 0]
        return column.name, _labels(X.index), column.tolist(), True
    if hasattr(X, "iloc") and hasattr(X, "index"):  # a Series
        return X.name, _labels(X.index), X.tolist(), False
    if isinstance(X, np.ndarray) and X.dtype.kind in "OUS":
        if X.ndim == 2:
            if X.shape[1] != 1:
                raise ValueError(
                    f"X is a 2-D array of shape {X.shape}; {_a(modality)} backbone takes one column of {expected}, "
                    "an array of shape (n, 1) or (n,)."
                )
            return None, None, X[:, 0].tolist(), True
        if X.ndim == 1:
            return None, None, X.tolist(), False
    return None, None, None, False


def _a(modality: str) -> str:
    return ("an " if modality[0] in "aeiou" else "a ") + modality


def _labels(index) -> list | None:
    """Index labels worth naming: None for the default 0..n-1 range."""
    labels = index.tolist()
    return None if labels == list(range(len(labels))) else labels


def _record_column(estimator, X, name, two_d: bool, reset: bool) -> None:
    named = hasattr(X, "columns") and isinstance(name, str)
    if reset:
        for attribute in ("n_features_in_", "feature_names_in_"):
            if attribute in vars(estimator):
                delattr(estimator, attribute)
        if two_d:
            estimator.n_features_in_ = 1
        if named:
            estimator.feature_names_in_ = np.asarray([name], dtype=object)
        return
    fitted = getattr(estimator, "feature_names_in_", None)
    if named and fitted is not None and name != fitted[0]:
        raise ValueError(
            f"X's column is {name!r}, but {type(estimator).__name__} was fitted on column {fitted[0]!r}; "
            "pass the same column (or a Series / list of its values)."
        )


def _rows(positions: list[int], labels: list | None) -> str:
    shown = positions[:_ROWS_SHOWN]
    text = ", ".join(map(str, shown))
    if labels is not None:
        text += f" (index label(s) {', '.join(repr(labels[p]) for p in shown)})"
    if len(positions) > len(shown):
        text += f" and {len(positions) - len(shown)} more"
    return text


def _column(name) -> str:
    return f"Column {name!r}" if name is not None else "X"


def _check_missing(values: list, modality: str, name, labels) -> None:
    missing = [position for position, value in enumerate(values) if _is_missing_sample(value, modality)]
    if not missing:
        return
    found = sorted({repr(values[position]) for position in missing})
    hint = " (an empty string is a valid text)" if modality == "text" else ""
    raise ValueError(
        f"{_column(name)} has missing values at row(s) {_rows(missing, labels)}: {', '.join(found)}. "
        f"Drop those rows or fill them before FungiTransformer{hint}."
    )


def _is_missing_sample(value, modality: str) -> bool:
    if is_missing(value):
        return True
    return modality == "image" and isinstance(value, (str, os.PathLike)) and not os.fspath(value).strip()


def _check_one_kind(values: list, name, labels) -> None:
    rows: dict[str, list[int]] = {}
    for position, value in enumerate(values):
        rows.setdefault(_kind(value), []).append(position)
    if len(rows) > 1:
        kinds = "; ".join(f"{kind} at row(s) {_rows(positions, labels)}" for kind, positions in rows.items())
        raise ValueError(
            f"{_column(name)} mixes kinds of values: {kinds}. A column must hold one kind of value "
            "(all texts, all paths, all arrays, ...); convert or drop the odd rows."
        )


def _kind(value) -> str:
    if isinstance(value, (str, os.PathLike)):
        return "str/path"
    if isinstance(value, np.ndarray):
        return "numpy array"
    if isinstance(value, torch.Tensor):
        return "torch tensor"
    if isinstance(value, numbers.Number):
        return "number"
    if any(cls.__module__.startswith("PIL.") and cls.__name__ == "Image" for cls in type(value).__mro__):
        return "PIL image"
    return type(value).__name__
