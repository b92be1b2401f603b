"""The contract every backbone adapter fulfils, whatever the modality."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn as nn

from .._utils.device import module_on
from .._utils.seeding import content_key

__all__ = ["Backbone", "check_module"]


def check_module(module: nn.Module) -> None:
    """Refuse a module that cannot give true features: tensors on the meta device (never
    materialised), floating parameters that hold NaN or infinite values, buffers that hold NaN."""
    for kind, named in (("parameter", module.named_parameters()), ("buffer", module.named_buffers())):
        for name, tensor in named:
            if tensor.is_meta:
                raise ValueError(
                    f"the backbone's {kind} {name!r} is on the meta device (it holds no values): load or "
                    "materialise the module's weights first (e.g. module.to_empty(device=...) then load_state_dict)."
                )
            # a buffer may hold -inf on purpose (an attention mask); NaN is never meant
            bad = torch.isnan(tensor) if kind == "buffer" else ~torch.isfinite(tensor)
            if tensor.is_floating_point() and bool(bad.any()):
                what = "NaN" if kind == "buffer" else "NaN or infinite"
                raise ValueError(
                    f"the backbone's {kind} {name!r} contains {what} values: its features would be "
                    "NaN or zero. Check the weights file or the training that produced it."
                )


class Backbone:
    """Base class of backbone adapters.

    An adapter owns everything modality-specific about the data's path into
    the module: validating raw inputs (:meth:`as_samples`), the sample's
    canonical form (:meth:`canonical`) and the raw sample's identity for
    seeding (:meth:`sample_key`), the inference view, and turning a list of views into
    an ``(N, E)`` embedding (:meth:`embed`). The engine and the losses never
    look inside a sample, and an adapter knows nothing of the losses: their
    views are built by :mod:`skfungi.views` from the adapter's geometry.

    Subclasses set ``modality`` (``"image"``, ``"text"``, ``"audio"`` or
    ``"tabular"``), ``module`` and ``default_layer``.
    """

    modality = "unknown"
    module: nn.Module
    default_layer: str | None = None

    def as_samples(self, X, estimator=None, reset: bool = True) -> Sequence:
        """Validate ``X`` and return a sequence of samples (decoded on access).

        ``estimator`` and ``reset`` are those of scikit-learn's
        ``validate_data``, for adapters whose inputs are tabular.
        """
        raise NotImplementedError

    def fit(self, samples) -> Backbone:
        """The adapter fitted to the training ``samples`` (from :meth:`as_samples`).

        Adapters that measure nothing from the data return themselves;
        those that do (a tabular adapter's feature statistics) return a fitted
        copy that shares the module, so the adapter a user passed is never
        modified.
        """
        return self

    def canonical(self, sample, index: int):
        """One sample in the form the views are built from."""
        return sample

    def sample_key(self, sample) -> bytes:
        """Digest of a raw sample (as :meth:`as_samples` yields it, before :meth:`canonical`): the seed of its views.

        It must depend on the input's values alone, never on floating-point
        results (which may round differently with the thread count or machine).
        """
        return content_key(sample)

    def inference_view(self, sample):
        """The view the embedding is computed from."""
        raise NotImplementedError

    def embed(self, views: Sequence) -> torch.Tensor:
        """``(N, E)`` embeddings of ``N`` views (autograd as the caller sets it)."""
        raise NotImplementedError

    def to(self, device: torch.device, memo: dict | None = None) -> Backbone:
        """This adapter when its module is on ``device``, else a shallow copy holding a moved copy of the module.

        The module given by the user is never moved in place. ``memo`` keeps
        one copy per module when several objects share it.
        """
        placed = module_on(self.module, device, memo)
        if placed is self.module:
            return self
        moved = copy.copy(self)
        moved.module = placed
        return moved

    def compiled(self, options: dict) -> Backbone:
        """A shallow copy whose module's calls run through ``torch.compile(**options)``.

        The module is shallow-copied too: it shares every parameter and
        submodule with the given one (so layer paths and hooks are unchanged),
        and only the copy's calls are compiled, never the given module's.
        """
        module = copy.copy(self.module)
        # the copy's own call, so that it runs with the copy's training flag (set by frozen_eval)
        module._compiled_call_impl = torch.compile(module._call_impl, **options)
        moved = copy.copy(self)
        moved.module = module
        return moved

    @property
    def device(self) -> torch.device:
        param = next(self.module.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        param = next(self.module.parameters(), None)
        return param.dtype if param is not None and param.is_floating_point() else torch.float32

    def _check_embedding(self, output, n_views: int) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.ndim != 2 or output.shape[0] != n_views:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise ValueError(
                f"the backbone's embedding must be an (N, E) tensor with N = {n_views}, got {shape}; "
                f"give {type(self).__name__} an embed function that pools or selects the embedding."
            )
        return output
