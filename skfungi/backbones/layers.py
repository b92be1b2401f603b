"""Target layers: which layers of a module FUNGI can take gradients from, and their gradient's shape.

A target is an ``nn.Linear`` (its inputs' last axis is the feature axis, any
other axes are tokens) or an ``nn.Conv1d`` / ``nn.Conv2d`` of any kernel,
stride, padding, dilation and groups (each output position is a token whose
input is the patch its kernel covers; see ``skfungi._engine.gradients``).
The gradient of its weight, bias column last, is ``d_out x (d_in + bias)``
with ``d_in = in_channels / groups * kernel area`` for a convolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn as nn

__all__ = [
    "CONVOLUTIONS",
    "LayerShape",
    "last_linear",
    "layer_shape",
    "resolve_layer",
    "supported_layers",
    "target_layer",
]

CONVOLUTIONS = (nn.Conv1d, nn.Conv2d)
_TARGETS = (nn.Linear, *CONVOLUTIONS)


@dataclass(frozen=True)
class LayerShape:
    """Shape of a target layer's weight gradient: ``d_out x (d_in + bias)``."""

    out_features: int
    in_features: int
    bias: bool

    @property
    def gradient_shape(self) -> tuple[int, int]:
        return self.out_features, self.in_features + int(self.bias)

    @property
    def gradient_dim(self) -> int:
        rows, cols = self.gradient_shape
        return rows * cols


def supported_layers(module: nn.Module) -> list[str]:
    """Dotted paths of every layer FUNGI can take gradients from, in registration order."""
    return [path for path, layer in module.named_modules() if isinstance(layer, _TARGETS)]


def last_linear(module: nn.Module) -> str | None:
    """Dotted path of the last ``nn.Linear`` registered in ``module`` (``""`` if the module itself is
    one; None if it has none): the default target layer of the generic adapters."""
    paths = [path for path, layer in module.named_modules() if isinstance(layer, nn.Linear)]
    return paths[-1] if paths else None


def resolve_layer(module: nn.Module, path: str) -> nn.Module:
    """The submodule at dotted ``path``; a clear error listing candidates otherwise."""
    candidates = supported_layers(module)
    try:
        layer = module.get_submodule(path)
    except AttributeError:
        raise ValueError(f"layer {path!r} does not exist in the backbone; {_candidates(candidates)}") from None
    if path not in candidates:
        raise ValueError(
            f"layer {path!r} is a {type(layer).__name__}; FUNGI needs an nn.Linear, nn.Conv1d or nn.Conv2d; "
            f"{_candidates(candidates)}"
        )
    _refuse_tied_weights(module, path, layer)
    return layer


def _refuse_tied_weights(module: nn.Module, path: str, layer: nn.Module) -> None:
    """A weight or bias of ``layer`` that another module also holds (tied weights) is used where the layer's hook
    does not see it, so the gradient would miss that use: refuse it, naming the other module."""
    own = [tensor for tensor in (layer.weight, layer.bias) if tensor is not None]
    for name, other in module.named_modules(remove_duplicate=False):
        if other is layer:
            continue  # the same module under another name: its every call is hooked
        for parameter_name, parameter in other.named_parameters(recurse=False):
            if any(parameter is tensor for tensor in own):
                where = f"{name}.{parameter_name}" if name else parameter_name
                raise ValueError(
                    f"layer {path!r} shares its parameters with {where!r} (tied weights): FUNGI records the calls "
                    f"of {path!r} only, so the gradient would miss the other use of the shared weight. Choose "
                    "another layer, or call the same module object where the weight is reused."
                )


def target_layer(backbone, layer: str) -> str:
    """The dotted path ``layer`` stands for with ``backbone`` (an adapter): itself, or for ``"auto"``
    the adapter's default; a clear error listing the deepest candidates when there is none."""
    if layer != "auto":
        return layer
    if backbone.default_layer is None:
        candidates = supported_layers(backbone.module)[-8:]
        raise ValueError(
            f"{backbone!r} has no default target layer; pass layer=... with the dotted path of an "
            f"nn.Linear, nn.Conv1d or nn.Conv2d (deepest candidates: {', '.join(candidates) or 'none'})."
        )
    return backbone.default_layer


def _candidates(candidates: list[str]) -> str:
    if not candidates:
        return "the backbone has no supported layer (nn.Linear, nn.Conv1d or nn.Conv2d)."
    shown = candidates[-12:]
    more = f" (and {len(candidates) - len(shown)} earlier)" if len(candidates) > len(shown) else ""
    return "candidate layers, deepest last: " + ", ".join(shown) + more + "."


def layer_shape(layer: nn.Module) -> LayerShape:
    """The shape of ``layer``'s weight gradient (bias column included)."""
    if isinstance(layer, nn.Linear):
        return LayerShape(layer.out_features, layer.in_features, layer.bias is not None)
    patch = layer.in_channels // layer.groups * math.prod(layer.kernel_size)
    return LayerShape(layer.out_channels, patch, layer.bias is not None)
