"""Per-sample gradients of one target layer, from one batched backward.

For a layer ``y_t = W x_t + b`` applied to tokens ``x_t`` (positions of a 1x1
convolution count as tokens) the gradient of a loss is
``sum_t g_t [x_t; 1]^T`` with ``g_t = dL/dy_t``. A forward hook records each
call's input ``x`` and replaces the output by a detached leaf, so autograd
runs only from the loss back to the layer's output: nothing flows into the
trunk, and the weight gradient itself is never formed by autograd. The
per-sample *factors* ``(g, [x; 1])`` are handed to the projection, which
decides whether to form the ``d_out x (d_in + 1)`` matrix (dense projection)
or not (Kronecker).

Tokens whose ``g_t`` is zero in the whole batch (every token but CLS after the
last ``attn.proj`` of a CLS-pooled ViT) contribute nothing and are dropped,
which is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

__all__ = ["GradientCapture", "LayerShape", "layer_shape", "resolve_layer", "supported_layers"]


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


def _is_pointwise_conv(layer: nn.Module) -> bool:
    return (
        isinstance(layer, nn.Conv2d)
        and layer.kernel_size == (1, 1)
        and layer.stride == (1, 1)
        and layer.padding in ((0, 0), "valid")
        and layer.groups == 1
    )


def _applied_functionally(parent: nn.Module | None, name: str) -> bool:
    return isinstance(parent, nn.MultiheadAttention) and name == "out_proj"


def supported_layers(module: nn.Module) -> list[str]:
    """Dotted paths of every layer FUNGI can take gradients from."""
    parents = dict(module.named_modules())
    names = []
    for path, layer in module.named_modules():
        parent_path, _, name = path.rpartition(".")
        if _applied_functionally(parents.get(parent_path), name):
            continue
        if isinstance(layer, nn.Linear) or _is_pointwise_conv(layer):
            names.append(path)
    return names


def resolve_layer(module: nn.Module, path: str) -> nn.Module:
    """The submodule at dotted ``path``; a clear error listing candidates otherwise."""
    candidates = supported_layers(module)
    try:
        layer = module.get_submodule(path)
    except AttributeError:
        raise ValueError(f"layer {path!r} does not exist in the backbone; {_candidates(candidates)}") from None
    parent_path, _, name = path.rpartition(".")
    if _applied_functionally(module.get_submodule(parent_path) if parent_path else None, name):
        raise ValueError(
            f"layer {path!r} is the out_proj of an nn.MultiheadAttention, which applies it "
            "functionally (its forward is never called), so its input cannot be captured by a "
            f"hook and its gradient would be wrong; {_candidates(candidates)}"
        )
    if path not in candidates:
        raise ValueError(
            f"layer {path!r} is a {type(layer).__name__}; FUNGI needs an nn.Linear or a 1x1, "
            f"stride-1, ungrouped nn.Conv2d; {_candidates(candidates)}"
        )
    return layer


def _candidates(candidates: list[str]) -> str:
    if not candidates:
        return "the backbone has no supported layer (nn.Linear or 1x1 nn.Conv2d)."
    shown = candidates[-12:]
    more = f" (and {len(candidates) - len(shown)} earlier)" if len(candidates) > len(shown) else ""
    return "candidate layers, deepest last: " + ", ".join(shown) + more + "."


def layer_shape(layer: nn.Module) -> LayerShape:
    if isinstance(layer, nn.Linear):
        return LayerShape(layer.out_features, layer.in_features, layer.bias is not None)
    return LayerShape(layer.out_channels, layer.in_channels, layer.bias is not None)


class GradientCapture:
    """Context manager recording a layer's inputs and detached outputs.

    Inside the context, every call of ``layer`` stores its input and returns
    its output as a fresh leaf that requires grad; :meth:`factors` then runs
    one ``torch.autograd.grad`` for the whole batch. The hook is removed on
    exit, whatever happens.
    """

    def __init__(self, layer: nn.Module, layer_path: str):
        self.layer = layer
        self.layer_path = layer_path
        self.has_bias = layer.bias is not None
        self.is_conv = isinstance(layer, nn.Conv2d)
        self._records: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._handle = None

    def __enter__(self) -> GradientCapture:
        if self._handle is not None:
            raise RuntimeError("GradientCapture is not re-entrant.")
        self._records = []
        self._handle = self.layer.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc_info) -> None:
        self._handle.remove()
        self._handle = None
        self._records = []

    def _hook(self, module, inputs, output):
        leaf = output.detach().requires_grad_(True)
        self._records.append((inputs[0].detach(), leaf))
        return leaf

    def factors(
        self, loss: torch.Tensor, n_samples: int, retain_graph: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample factors of the gradient of ``loss`` (a sum of per-sample losses).

        Returns ``g`` of shape ``(n_samples, M, d_out)`` and ``a`` of shape
        ``(n_samples, M, d_in [+ 1])``, such that sample ``s``'s weight gradient
        (bias column last) is ``g[s].T @ a[s]``. Each forward recorded inside the
        context must hold ``n_samples * V`` rows ordered sample-major.
        ``retain_graph`` keeps the graph for another loss on the same forward.
        """
        if not self._records:
            raise RuntimeError(
                f"the target layer {self.layer_path!r} was never called in the forward pass; "
                "it may be unused by the embedding or applied functionally."
            )
        leaves = [leaf for _, leaf in self._records]
        grads = torch.autograd.grad(loss, leaves, retain_graph=retain_graph, allow_unused=True)
        g_parts, a_parts = [], []
        for (inputs, leaf), grad in zip(self._records, grads, strict=True):
            grad = torch.zeros_like(leaf) if grad is None else grad
            tokens_in, tokens_grad = self._tokens(inputs), self._tokens(grad)
            rows = tokens_in.shape[0]
            if rows % n_samples:
                raise RuntimeError(
                    f"the target layer {self.layer_path!r} saw a batch of {rows} rows for "
                    f"{n_samples} samples; its input must have the batch as first dimension."
                )
            active = tokens_grad.abs().amax(dim=(0, 2)) > 0
            if not bool(active.all()):
                tokens_in, tokens_grad = tokens_in[:, active], tokens_grad[:, active]
            g_parts.append(tokens_grad.reshape(n_samples, -1, tokens_grad.shape[-1]))
            a_parts.append(tokens_in.reshape(n_samples, -1, tokens_in.shape[-1]))
        g, a = torch.cat(g_parts, dim=1), torch.cat(a_parts, dim=1)
        if self.has_bias:
            a = torch.cat([a, a.new_ones((*a.shape[:-1], 1))], dim=-1)
        return g, a

    def _tokens(self, tensor: torch.Tensor) -> torch.Tensor:
        """``(rows, tokens, features)`` view of a layer input or output gradient."""
        if self.is_conv:
            return tensor.flatten(2).transpose(1, 2)
        return tensor.reshape(tensor.shape[0], -1, tensor.shape[-1])
