"""Tabular backbones: rows of numeric features through a torch MLP.

FUNGI on tabular data is an extension beyond the paper (which covers images,
text and audio). Rows are validated as scikit-learn validates them
(``validate_data``: NaN, strings, sparse input and a changed number of
features are errors), the SimCLR views drop features and add noise scaled by
the per-feature spread measured on the training rows (:attr:`feature_scale`).

- :class:`TabularBackbone` wraps a user's module, which must map
  ``(N, n_features)`` rows to ``(N, E)`` embeddings;
- :class:`TabularMLP` builds its own seeded, randomly initialised MLP for the
  training data's width in ``fit`` (no pretrained module needed, any width);
- :func:`make_mlp_encoder` is that MLP as a plain ``nn.Module``.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Sequence
from itertools import pairwise
from numbers import Integral

import numpy as np
import torch
import torch.nn as nn

from .._utils.seeding import generator
from .._utils.sklearn_compat import Options, validate_parameter_constraints
from .._utils.validation import int_range
from ..inputs.tabular import as_rows
from ._base import Backbone
from .layers import last_linear

__all__ = ["TabularBackbone", "TabularMLP", "make_mlp_encoder"]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_MLP_CONSTRAINTS = {
    "hidden": [list, tuple],
    "embedding_dim": [int_range(1)],
    "random_state": [int_range(0)],
    "dtype": [Options(torch.dtype, set(_FLOAT_DTYPES))],
}


def make_mlp_encoder(
    n_features: int,
    hidden: Sequence[int] = (64, 64),
    embedding_dim: int = 32,
    random_state: int = 0,
    dtype: torch.dtype = torch.float32,
) -> nn.Sequential:
    """A randomly initialised MLP ``n_features -> hidden... -> embedding_dim`` (ReLU between layers).

    Layers are named ``hidden0``, ``activation0``, ..., ``output``; ``output``
    (the last ``nn.Linear``) is the default FUNGI target layer. Weights and
    biases are drawn as ``nn.Linear`` draws them (uniform in
    ``+-1/sqrt(fan_in)``), from a CPU generator seeded with ``random_state``:
    the same arguments give the same module on every machine, and the global
    torch RNG is left alone.

    Parameters
    ----------
    n_features : int
        Width of the input rows.
    hidden : sequence of int, default=(64, 64)
        Widths of the hidden layers (may be empty: one linear layer).
    embedding_dim : int, default=32
        Width of the output embedding.
    random_state : int, default=0
        Seed of the initialisation.
    dtype : torch.dtype, default=torch.float32
        Parameter dtype.

    Returns
    -------
    module : torch.nn.Sequential

    Examples
    --------
    >>> from skfungi.backbones.tabular import make_mlp_encoder
    >>> net = make_mlp_encoder(5, hidden=(8,), embedding_dim=4)
    >>> [name for name, _ in net.named_children()]
    ['hidden0', 'activation0', 'output']
    >>> net.output.weight.shape
    torch.Size([4, 8])
    """
    validate_parameter_constraints(
        {**_MLP_CONSTRAINTS, "n_features": [int_range(1)]},
        {
            "n_features": n_features,
            "hidden": hidden,
            "embedding_dim": embedding_dim,
            "random_state": random_state,
            "dtype": dtype,
        },
        caller_name="make_mlp_encoder",
    )
    widths = [int(n_features), *_check_widths(hidden), int(embedding_dim)]
    rng = generator(int(random_state))
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for index, (fan_in, fan_out) in enumerate(pairwise(widths)):
        last = index == len(widths) - 2
        linear = nn.utils.skip_init(nn.Linear, fan_in, fan_out, dtype=dtype)  # no draw from the global RNG
        bound = 1.0 / math.sqrt(fan_in)
        with torch.no_grad():
            linear.weight.copy_((torch.rand(fan_out, fan_in, generator=rng, dtype=torch.float64) * 2 - 1) * bound)
            linear.bias.copy_((torch.rand(fan_out, generator=rng, dtype=torch.float64) * 2 - 1) * bound)
        layers["output" if last else f"hidden{index}"] = linear
        if not last:
            layers[f"activation{index}"] = nn.ReLU()
    return nn.Sequential(layers)


class TabularBackbone(Backbone):
    """Wrap any torch module that maps ``(N, n_features)`` float rows to ``(N, E)`` embeddings.

    Inputs are 2-D arrays or pandas DataFrames of numeric features, validated
    with scikit-learn's ``validate_data`` (so ``FungiTransformer`` gets
    ``n_features_in_`` and ``feature_names_in_``); each row is one sample, a
    1-D float tensor. ``fit`` measures :attr:`feature_scale`, the per-feature
    standard deviation of the training rows, which scales the noise of the
    tabular SimCLR views at ``fit`` and ``transform`` alike.

    Parameters
    ----------
    module : torch.nn.Module
        The frozen encoder; its output must be ``(N, E)``. It is never
        modified: skfungi runs it in eval mode with frozen weights and
        restores its flags afterwards.
    layer : str, optional
        Dotted path of the default target layer. Default: the last
        ``nn.Linear`` of ``module``. ``FungiTransformer(layer=...)`` overrides it.
    dtype : torch.dtype, optional
        Dtype of the rows given to the module. Default: the dtype of the
        module's floating parameters (float32 if it has none).
    standardize : bool, default=False
        Subtract the training rows' mean and divide by :attr:`feature_scale`
        before the module. Leave it off for a module trained on its own
        preprocessing (apply that preprocessing in a Pipeline step instead).

    Attributes
    ----------
    n_features : int
        Width of the training rows (after ``fit``).
    feature_scale : torch.Tensor of shape (n_features,), float64
        Standard deviation of each feature over the training rows, with zero
        (constant features) replaced by 1 (after ``fit``).
    feature_mean : torch.Tensor of shape (n_features,), float64
        Mean of each feature over the training rows (after ``fit``).

    Examples
    --------
    >>> import numpy as np, torch.nn as nn
    >>> from skfungi import FungiTransformer
    >>> from skfungi.backbones.tabular import TabularBackbone
    >>> net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 8))
    >>> X = np.random.default_rng(0).normal(size=(30, 4))
    >>> fungi = FungiTransformer(TabularBackbone(net), losses=("kl", "simclr"), random_state=0)
    >>> fungi.fit_transform(X).shape
    (30, 24)
    >>> fungi.layer_
    '2'
    """

    modality = "tabular"

    def __init__(
        self,
        module: nn.Module,
        *,
        layer: str | None = None,
        dtype: torch.dtype | None = None,
        standardize: bool = False,
    ):
        validate_parameter_constraints(
            {
                "module": [nn.Module],
                "layer": [str, None],
                "dtype": [None, Options(torch.dtype, set(_FLOAT_DTYPES))],
                "standardize": ["boolean"],
            },
            {"module": module, "layer": layer, "dtype": dtype, "standardize": standardize},
            caller_name=type(self).__name__,
        )
        self.module = module
        self.default_layer = layer if layer is not None else last_linear(module)
        self.row_dtype = dtype
        self.standardize = bool(standardize)
        self.n_features = None
        self._scale = None
        self._mean = None

    # -- the Backbone contract ---------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        return self.row_dtype if self.row_dtype is not None else super().dtype

    @property
    def feature_scale(self) -> torch.Tensor:
        return self._fitted(self._scale)

    @property
    def feature_mean(self) -> torch.Tensor:
        return self._fitted(self._mean)

    def as_samples(self, X, estimator=None, reset: bool = True) -> torch.Tensor:
        """Validate ``X`` (see ``skfungi.inputs.tabular.as_rows``) and return its rows as an
        ``(n_samples, n_features)`` float64 tensor, one sample per row.

        With ``reset=False`` (``transform``) the adapter must be fitted and
        ``X`` must have the training width.
        """
        if not reset:
            self._fitted(self._scale)
        rows = as_rows(X, estimator, reset)
        if not reset and rows.shape[1] != self.n_features:  # only reachable without an estimator
            raise ValueError(f"X has {rows.shape[1]} features, but the backbone was fitted on {self.n_features}.")
        return torch.tensor(np.ascontiguousarray(rows), dtype=torch.float64)  # a copy; views may have any strides

    def fit(self, samples: torch.Tensor) -> TabularBackbone:
        """A copy of this adapter (sharing the module) with the training rows' statistics.

        The mean and standard deviation of each feature are computed after
        dividing the column by its largest magnitude, so that values near the
        float64 limit (``1e300``) neither overflow nor lose the spread.
        """
        fitted = copy.copy(self)
        magnitude = samples.abs().amax(dim=0)
        magnitude = torch.where(magnitude > 0, magnitude, torch.ones_like(magnitude))
        scaled = samples / magnitude
        scale = scaled.std(dim=0, correction=0) * magnitude
        fitted._scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        fitted._mean = scaled.mean(dim=0) * magnitude
        fitted.n_features = int(samples.shape[1])
        return fitted

    def canonical(self, row: torch.Tensor, index: int) -> torch.Tensor:
        """One row, checked to be a 1-D tensor of the training width."""
        if not isinstance(row, torch.Tensor) or row.ndim != 1 or row.shape[0] != self.n_features:
            shape = tuple(row.shape) if isinstance(row, torch.Tensor) else type(row).__name__
            raise ValueError(f"sample {index} must be a 1-D row of {self.n_features} features, got {shape}.")
        return row

    def inference_view(self, row: torch.Tensor) -> torch.Tensor:
        """The row itself."""
        return row

    def embed(self, views) -> torch.Tensor:
        """``(N, E)`` embeddings of a list of rows or an ``(N, n_features)`` tensor."""
        batch = views if isinstance(views, torch.Tensor) else torch.stack(list(views))
        if batch.ndim != 2 or batch.shape[1] != self.n_features:
            raise ValueError(f"expected views of shape (N, {self.n_features}), got {tuple(batch.shape)}.")
        if self.standardize:  # in float64, before any narrowing to the module's dtype
            batch = (batch.double() - self.feature_mean.to(batch.device)) / self.feature_scale.to(batch.device)
        batch = batch.to(device=self.device, dtype=self.dtype)
        try:
            output = self.module(batch)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as error:  # most often a module built for another number of features
            raise ValueError(
                f"the backbone module failed on rows of {self.n_features} features: {error}. It must map "
                f"(N, {self.n_features}) rows to (N, E) embeddings; TabularMLP builds an MLP for any width."
            ) from error
        return self._check_embedding(output, batch.shape[0])

    # -- internals ------------------------------------------------------------

    def _fitted(self, value):
        if value is None:
            raise RuntimeError(
                f"{type(self).__name__} has not seen training rows yet: it is fitted by FungiTransformer.fit."
            )
        return value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.module).__name__}, layer={self.default_layer!r})"


class TabularMLP(TabularBackbone):
    """A seeded, randomly initialised MLP built for the training rows' width in ``fit``.

    No pretrained module is needed and any number of features is accepted:
    ``fit`` builds :func:`make_mlp_encoder` ``(n_features, hidden,
    embedding_dim, random_state)``. Inputs are standardised with the training
    rows' mean and :attr:`feature_scale` before the MLP, so features of
    different units weigh alike. The target layer is ``"output"``.

    A random MLP is not a pretrained encoder: whether its FUNGI features help
    on a given data set is an empirical question (see ``docs/tabular.md``).

    Parameters
    ----------
    hidden : sequence of int, default=(64, 64)
        Hidden layer widths.
    embedding_dim : int, default=32
        Width of the embedding (the MLP's output).
    random_state : int, default=0
        Seed of the MLP's weights (the heads, projection and views are seeded
        by ``FungiTransformer(random_state=...)``).
    standardize : bool, default=True
        Standardise rows with the training statistics before the MLP.
    dtype : torch.dtype, default=torch.float64
        Dtype of the MLP and of the rows (and so of the loss heads). Float64
        by default: a tabular MLP is cheap, and in float32 the KL loss at
        temperature 15 (a near-uniform softmax minus the uniform target)
        loses about four digits, so a row's float32 features would vary by
        about 1e-4 (relative) with the batch it is transformed in; in float64
        they do not vary at all.

    Attributes
    ----------
    module : torch.nn.Sequential or None
        The MLP (None before ``fit``).

    Examples
    --------
    >>> import numpy as np
    >>> from skfungi import FungiTransformer
    >>> from skfungi.backbones.tabular import TabularMLP
    >>> X = np.random.default_rng(0).normal(size=(30, 6))
    >>> fungi = FungiTransformer(TabularMLP(hidden=(16,), embedding_dim=8), losses=("kl",), random_state=0)
    >>> fungi.fit_transform(X).shape
    (30, 16)
    >>> fungi.fit_transform(X[:, :3]).shape  # any width
    (30, 16)
    """

    def __init__(
        self,
        hidden: Sequence[int] = (64, 64),
        embedding_dim: int = 32,
        *,
        random_state: int = 0,
        standardize: bool = True,
        dtype: torch.dtype = torch.float64,
    ):
        validate_parameter_constraints(
            {**_MLP_CONSTRAINTS, "standardize": ["boolean"]},
            {
                "hidden": hidden,
                "embedding_dim": embedding_dim,
                "random_state": random_state,
                "dtype": dtype,
                "standardize": standardize,
            },
            caller_name=type(self).__name__,
        )
        self.hidden = tuple(_check_widths(hidden))
        self.embedding_dim = int(embedding_dim)
        self.random_state = int(random_state)
        self.module = None
        self.default_layer = "output"
        self.row_dtype = dtype
        self.standardize = bool(standardize)
        self.n_features = None
        self._scale = None
        self._mean = None

    def fit(self, samples: torch.Tensor) -> TabularMLP:
        """As :meth:`TabularBackbone.fit`, with the MLP built for the rows' width."""
        fitted = super().fit(samples)
        fitted.module = make_mlp_encoder(
            fitted.n_features, self.hidden, self.embedding_dim, self.random_state, self.row_dtype
        )
        return fitted

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(hidden={self.hidden}, embedding_dim={self.embedding_dim}, "
            f"random_state={self.random_state})"
        )


def _check_widths(hidden) -> list[int]:
    """The hidden widths as ints; each must be a positive int."""
    for width in hidden:
        if not isinstance(width, Integral) or isinstance(width, bool) or width < 1:
            raise ValueError(f"the widths in hidden must be positive ints, got {hidden!r}.")
    return [int(width) for width in hidden]
