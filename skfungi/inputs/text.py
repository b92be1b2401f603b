"""Validate text inputs: a collection of Python ``str``, nothing converted to text."""

from __future__ import annotations

import numpy as np
import torch

from .columns import is_missing
from .meta import refuse_meta

__all__ = ["as_texts"]


def as_texts(X) -> list[str]:
    """Check that ``X`` is a collection of texts and return them as a list of ``str``.

    Accepted: a list or tuple of ``str``, a 1-D numpy array of ``str`` (or of
    objects that are all ``str``), a pandas Series of ``str``. Empty and
    whitespace-only texts are allowed. Missing values (``None``, NaN,
    ``pd.NA``) and non-``str`` elements (bytes, numbers, images...) raise an
    error naming the sample's position; nothing is converted to text.

    Examples
    --------
    >>> from skfungi.inputs.text import as_texts
    >>> as_texts(["a cat", ""])
    ['a cat', '']
    >>> as_texts(["a cat", None])
    Traceback (most recent call last):
    ...
    ValueError: sample 1 is missing (None); drop or fill missing texts before calling skfungi.
    """
    if isinstance(X, (str, bytes)):
        raise TypeError(f"X must be a collection of texts, not a single {type(X).__name__}; wrap it in a list.")
    if hasattr(X, "columns"):
        raise TypeError(
            f"X is a {type(X).__name__} with columns {list(X.columns)[:5]}; a text backbone takes one column "
            "of texts: pass a Series such as X['text']."
        )
    if isinstance(X, torch.Tensor):
        refuse_meta(X, "X")
        raise TypeError(
            f"X is a tensor of shape {tuple(X.shape)}, but this backbone takes texts: "
            "a list, 1-D array or pandas Series of str."
        )
    if isinstance(X, np.ndarray):
        if X.ndim != 1:
            hint = " (images?)" if X.ndim in (3, 4) else " (tabular rows?)" if X.ndim == 2 else ""
            raise ValueError(
                f"X is a {X.ndim}-D array of shape {X.shape} and dtype {X.dtype}{hint}, but this backbone "
                "takes texts: a list, 1-D array or pandas Series of str."
            )
        if X.dtype.kind not in "UO":
            raise TypeError(f"X is an array of dtype {X.dtype}, not of texts; this backbone takes str elements.")
        items = X.tolist()
    elif hasattr(X, "iloc"):  # pandas Series
        items = X.tolist()
    elif isinstance(X, (list, tuple)):
        items = list(X)
    else:
        raise TypeError(f"X must be a list, tuple, 1-D numpy array or pandas Series of str; got {type(X).__name__}.")
    if not items:
        raise ValueError("X is empty: at least one text is required.")
    texts = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            texts.append(str(item))  # numpy.str_ -> str, same characters
            continue
        if is_missing(item):
            raise ValueError(
                f"sample {index} is missing ({item!r}); drop or fill missing texts before calling skfungi."
            )
        shape = f" of shape {tuple(item.shape)}" if hasattr(item, "shape") else ""
        raise TypeError(
            f"sample {index} is a {type(item).__name__}{shape}, not a str; this backbone takes texts "
            "(decode bytes and convert other values to str yourself)."
        )
    return texts
