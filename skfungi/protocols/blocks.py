"""Select blocks (``embedding``, ``kl``, ``dino``, ``simclr``) of FUNGI features by their column names.

Extracting FUNGI features once with every loss, then choosing blocks per grid
candidate, searches the loss set for the price of one extraction: each block
of :class:`~skfungi.FungiTransformer`'s output is normalised on its own and
drawn from seeds named after its loss, so the ``kl`` block of a
``("kl", "dino", "simclr")`` extraction is the ``kl`` block that
``losses=("kl",)`` would give.
"""

from __future__ import annotations

import re

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["FungiBlockSelector", "feature_blocks"]

_NAME = re.compile(r"^(.*\D)(\d+)$")


def feature_blocks(feature_names) -> dict[str, np.ndarray]:
    """Column indices of each block, from names such as ``embedding0, ..., kl0, ...``.

    Parameters
    ----------
    feature_names : array-like of str
        Output of :meth:`FungiTransformer.get_feature_names_out` (or the
        columns of its pandas output): a prefix followed by a number.

    Returns
    -------
    blocks : dict of str to ndarray of int
        Prefix -> column indices, in the order the blocks appear.

    Examples
    --------
    >>> from skfungi.protocols.blocks import feature_blocks
    >>> {name: cols.tolist() for name, cols in feature_blocks(["embedding0", "embedding1", "kl0", "kl1"]).items()}
    {'embedding': [0, 1], 'kl': [2, 3]}
    """
    blocks: dict[str, list[int]] = {}
    for column, name in enumerate(feature_names):
        match = _NAME.match(str(name))
        if match is None:
            raise ValueError(
                f"feature name {name!r} (column {column}) is not '<block><number>'; FungiBlockSelector needs "
                "FungiTransformer's feature names (embedding0, ..., kl0, ...)."
            )
        blocks.setdefault(match.group(1), []).append(column)
    return {name: np.asarray(columns, dtype=np.intp) for name, columns in blocks.items()}


class FungiBlockSelector(TransformerMixin, BaseEstimator):
    """Keep some blocks of :class:`~skfungi.FungiTransformer`'s output, by name.

    The block layout is read from column names: those of a pandas DataFrame
    (``FungiTransformer(...).set_output(transform="pandas")``), or
    ``feature_names`` (``fungi.get_feature_names_out()``) for plain arrays.
    Use it to grid-search the loss set on features extracted once::

        features = FungiTransformer(backbone, losses=("kl", "dino", "simclr"),
                                    random_state=0).set_output(transform="pandas").fit_transform(X)
        search = GridSearchCV(make_pipeline(FungiBlockSelector(), PCA(512), KNeighborsClassifier(20)),
                              {"fungiblockselector__blocks": [("embedding",), ("embedding", "kl"),
                                                              ("embedding", "kl", "dino", "simclr")]})
        search.fit(features, y)

    Inside a ``ColumnTransformer`` the blocks carry its prefixes
    (``text__embedding0``, ``text__kl0``, ...): a bare name such as ``"kl"``
    keeps every ``<prefix>__kl`` block (all FUNGI columns' KL blocks, in input
    order), a prefixed name such as ``"text__kl"`` keeps that block alone. So
    features extracted once, FUNGI columns beside ordinary ones, can be
    searched over with the selector in a ``ColumnTransformer`` next to the
    ordinary columns' transformers (see ``docs/workflows.md``).

    Parameters
    ----------
    blocks : str or sequence of str, default=("embedding", "kl", "dino", "simclr")
        Blocks to keep, in the output order given here; a bare name also
        designates prefixed blocks (``<prefix>__<name>``).
    feature_names : array-like of str or None, default=None
        Names of the input columns, for inputs without column names. With a
        DataFrame input, its columns are used (and must match, if both are
        given).

    Attributes
    ----------
    blocks_ : dict of str to ndarray of int
        Every block found in the input and its column indices.
    columns_ : ndarray of int
        Input columns kept, in output order.
    n_features_in_ : int
        Number of input columns.
    feature_names_in_ : ndarray of str
        Input column names (set when the input is a DataFrame).

    Examples
    --------
    >>> import numpy as np
    >>> from skfungi.protocols import FungiBlockSelector
    >>> names = ["embedding0", "embedding1", "kl0", "kl1", "dino0", "dino1"]
    >>> features = np.arange(12, dtype=np.float32).reshape(2, 6)
    >>> FungiBlockSelector(blocks=("embedding", "dino"), feature_names=names).fit_transform(features)
    array([[ 0.,  1.,  4.,  5.],
           [ 6.,  7., 10., 11.]], dtype=float32)
    """

    def __init__(self, blocks=("embedding", "kl", "dino", "simclr"), feature_names=None):
        self.blocks = blocks
        self.feature_names = feature_names

    def fit(self, X, y=None):
        """Find the columns of the requested blocks.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            FUNGI features.
        y : ignored

        Returns
        -------
        self : FungiBlockSelector
        """
        requested = self._requested_blocks()
        X = validate_data(self, X, dtype=[np.float32, np.float64])
        names = self._input_names(X.shape[1])
        blocks = feature_blocks(names)
        matches = {name: _matching_blocks(name, blocks) for name in requested}
        missing = [name for name, found in matches.items() if not found]
        if missing:
            raise ValueError(
                f"blocks {missing} not found in the input; its blocks are {list(blocks)}. Extract the features "
                "with every loss you want to search over."
            )
        chosen = [block for found in matches.values() for block in found]
        twice = sorted({block for block in chosen if chosen.count(block) > 1})
        if twice:
            raise ValueError(f"blocks {twice} are requested more than once (by {requested}).")
        self.blocks_ = blocks
        self.columns_ = np.concatenate([blocks[block] for block in chosen])
        self._names = np.asarray(names, dtype=object)
        return self

    def transform(self, X):
        """The requested blocks of ``X``.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        features : ndarray of shape (n_samples, len(columns_))
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float32, np.float64], reset=False)
        return X[:, self.columns_]

    def get_feature_names_out(self, input_features=None):
        """Names of the kept columns (``embedding0, ..., kl0, ...``)."""
        check_is_fitted(self)
        return self._names[self.columns_]

    def _requested_blocks(self) -> list[str]:
        blocks = [self.blocks] if isinstance(self.blocks, str) else self.blocks
        if not isinstance(blocks, (list, tuple)) or not blocks or not all(isinstance(b, str) for b in blocks):
            raise ValueError(f"blocks must be a block name or a non-empty sequence of names, got {self.blocks!r}.")
        duplicates = sorted({name for name in blocks if blocks.count(name) > 1})
        if duplicates:
            raise ValueError(f"blocks names {duplicates} more than once.")
        return list(blocks)

    def _input_names(self, n_features: int):
        from_frame = getattr(self, "feature_names_in_", None)
        if self.feature_names is None:
            if from_frame is None:
                raise ValueError(
                    "FungiBlockSelector needs column names to find the blocks: feed it a DataFrame "
                    "(FungiTransformer(...).set_output(transform='pandas')) or pass "
                    "feature_names=fungi.get_feature_names_out()."
                )
            return from_frame
        names = np.asarray(self.feature_names, dtype=object)
        if names.ndim != 1 or len(names) != n_features:
            raise ValueError(f"feature_names has {names.size} names but X has {n_features} columns.")
        if from_frame is not None and not np.array_equal(names, from_frame):
            raise ValueError("feature_names differs from the DataFrame's columns; pass one or the other.")
        return names


def _matching_blocks(name: str, blocks: dict) -> list[str]:
    """The input blocks that ``name`` designates: itself, or every ``<prefix>__<name>`` in input order."""
    if name in blocks:
        return [name]
    return [block for block in blocks if block.endswith(f"__{name}")]
