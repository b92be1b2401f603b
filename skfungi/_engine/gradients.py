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

The hook also switches autograd on for the rest of the forward, so a forward
run under ``torch.no_grad()`` records only the tail after the target layer:
the trunk runs exactly as a plain inference forward, with no autograd
bookkeeping at all.

A layer applied k times in one forward (shared weights: tied layers, a
recurrent cell, a universal transformer) has the gradient
``sum_c sum_t g_{c,t} [x_{c,t}; 1]^T``, where ``g_{c,t}`` is the derivative of
the loss with respect to the output of call ``c`` *including every path
through the later calls*. So the hook keeps a call's output in the graph when
it already depends on an earlier call (it requires grad), and detaches it
only when it does not (the first call, fed by the no-grad trunk); autograd
then gives each recorded output its total derivative, and the factors of all
calls are concatenated along the token axis, which sums them.

A convolution is a linear layer applied to patches. With ``unfold`` (im2col)
giving, for each output position ``t``, the column ``u_t`` of input values its
kernel covers (channels, then kernel rows, then kernel columns, as the weight
is laid out; the input padded as the layer pads it, with its stride and
dilation), ``y_t = W u_t + b`` with ``W`` the ``(out, in / groups * kh * kw)``
weight: the same form with ``x_t = u_t``, so any ``nn.Conv1d`` or
``nn.Conv2d`` is a target, and its gradient keeps the factor structure the
projections use. A 1x1, stride-1, unpadded convolution needs no unfolding:
its tokens are the input's positions. With ``groups > 1`` output ``o`` sees
only its group's channels: its row of the gradient is
``sum_t g_t[o] u_t[group(o)]``. That is formed directly, per group, and handed
on as the factors ``(I, G)``, whose product ``I^T G`` is ``G``: a depthwise
convolution costs ``out * kh * kw`` per position that way, where expanding
the groups into tokens would cost ``out`` times more.

Tokens whose ``g_t`` is zero for every sample of the batch (every token but
CLS after the last ``attn.proj`` of a CLS-pooled ViT) contribute nothing and
are dropped, which is exact. A NaN counts as non-zero, so a sample whose
gradient is not finite never makes another sample's tokens disappear.

``nn.MultiheadAttention`` applies its ``out_proj`` functionally, so a hook on
``out_proj`` never fires (and a hook on the attention module sees the wrong
input). For that layer the hook sits on the attention module: its output is
exactly ``out_proj(values)``, and the attention-weighted ``values`` are
recomputed from the module's own inputs with an identity output projection,
then checked against the module's output.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..backbones.layers import CONVOLUTIONS, resolve_layer

__all__ = ["GradientCapture", "check_capture"]


def _is_pointwise(conv: nn.Module) -> bool:
    """A convolution whose patches are single input positions: 1x1, stride 1, no padding."""
    ones = (1,) * len(conv.kernel_size)
    return conv.kernel_size == ones and conv.stride == ones and not any(conv._reversed_padding_repeated_twice)


def _attention_owner(module: nn.Module, path: str) -> nn.MultiheadAttention | None:
    """The ``nn.MultiheadAttention`` whose functional ``out_proj`` is at ``path``, if any."""
    parent_path, _, name = path.rpartition(".")
    parent = module.get_submodule(parent_path) if parent_path else None
    return parent if isinstance(parent, nn.MultiheadAttention) and name == "out_proj" else None


class GradientCapture:
    """Context manager recording a layer's inputs and detached outputs.

    Inside the context, every call of ``layer`` stores its input, returns its
    output as a fresh leaf that requires grad (or, for a repeated call whose
    input already depends on an earlier one, as it is) and switches grad mode
    on, so the forward can run under ``torch.no_grad()`` up to the layer;
    :meth:`factors` then runs one ``torch.autograd.grad`` for the whole batch.
    The hook is removed on exit, whatever happens.
    """

    def __init__(self, module: nn.Module, layer_path: str):
        self.layer = resolve_layer(module, layer_path)
        self.layer_path = layer_path
        self.attention = _attention_owner(module, layer_path)
        self.has_bias = self.layer.bias is not None
        self.conv = self.layer if isinstance(self.layer, CONVOLUTIONS) else None
        self.groups = self.conv.groups if self.conv is not None else 1
        self._records: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._handle = None
        self._fastpath = None

    def __enter__(self) -> GradientCapture:
        if self._handle is not None:
            raise RuntimeError("GradientCapture is not re-entrant.")
        self._records = []
        if self.attention is None:
            self._handle = self.layer.register_forward_hook(self._hook)
        else:
            # the fused fast paths of attention / encoder layers bypass module hooks
            self._fastpath = torch.backends.mha.get_fastpath_enabled()
            torch.backends.mha.set_fastpath_enabled(False)
            self._handle = self.attention.register_forward_hook(self._attention_hook, with_kwargs=True)
        return self

    def __exit__(self, *exc_info) -> None:
        self._handle.remove()
        self._handle = None
        self._records = []
        if self._fastpath is not None:
            torch.backends.mha.set_fastpath_enabled(self._fastpath)
            self._fastpath = None

    def _hook(self, module, inputs, output):
        recorded = output if output.requires_grad else output.detach().requires_grad_(True)
        self._records.append((inputs[0].detach(), recorded))
        torch.set_grad_enabled(True)  # record the tail; the enclosing no_grad restores the mode
        return _passed_on(recorded)

    def _attention_hook(self, attention, args, kwargs, output):
        values = _attention_values(attention, args, kwargs)
        projected = output[0]
        # under autocast the module's output was rounded to a half dtype: compare at that precision
        tolerance = 1e-4 if projected.dtype in (torch.float32, torch.float64) else 2e-2
        recomputed = F.linear(values, self.layer.weight, self.layer.bias).to(projected.dtype)
        if projected.shape != recomputed.shape or not torch.allclose(
            recomputed, projected, rtol=tolerance, atol=tolerance / 10
        ):
            raise RuntimeError(
                f"the output of {type(attention).__name__} is not out_proj(attention values); "
                f"cannot take the true gradient of {self.layer_path!r} in this module."
            )
        recorded = projected if projected.requires_grad else projected.detach().requires_grad_(True)
        batch_first_values = values if attention.batch_first else values.transpose(0, 1)
        self._records.append((batch_first_values.detach(), recorded))
        torch.set_grad_enabled(True)
        return (_passed_on(recorded), *output[1:])

    def factors(
        self, loss: torch.Tensor, n_samples: int, retain_graph: bool = False, keep_all_tokens: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample factors of the gradient of ``loss`` (a sum of per-sample losses).

        Returns ``g`` of shape ``(n_samples, M, d_out)`` and ``a`` of shape
        ``(n_samples, M, d_in [+ 1])``, such that sample ``s``'s weight gradient
        (bias column last) is ``g[s].T @ a[s]``. Each forward recorded inside the
        context must hold ``n_samples * V`` rows ordered sample-major.
        ``retain_graph`` keeps the graph for another loss on the same forward.
        ``keep_all_tokens`` keeps the tokens whose gradient is zero in the whole
        batch (per-token features need every token in its place).
        """
        if not self._records:
            raise RuntimeError(
                f"the target layer {self.layer_path!r} was never called in the forward pass; "
                "it may be unused by the embedding or applied functionally."
            )
        if not loss.requires_grad:
            raise RuntimeError(
                f"the target layer {self.layer_path!r} was called in the forward pass, but the embedding does not "
                "depend on its output (it is discarded, detached or only used without a gradient): the gradient "
                "of every loss at it would be zero. Choose a layer the embedding is computed from."
            )
        outputs = [output for _, output in self._records]
        grads = torch.autograd.grad(loss, outputs, retain_graph=retain_graph, allow_unused=True)
        g_parts, a_parts = [], []
        for (inputs, output), grad in zip(self._records, grads, strict=True):
            grad = torch.zeros_like(output) if grad is None else grad
            if self.attention is not None and not self.attention.batch_first:
                grad = grad.transpose(0, 1)
            tokens_in, tokens_grad = self._input_tokens(inputs), self._tokens(grad)
            rows = tokens_in.shape[0]
            if rows % n_samples:
                raise RuntimeError(
                    f"the target layer {self.layer_path!r} saw a batch of {rows} rows for "
                    f"{n_samples} samples; its input must have the batch as first dimension."
                )
            active = (tokens_grad != 0).any(dim=2).any(dim=0)  # NaN != 0: a non-finite sample keeps its tokens
            if not keep_all_tokens and not bool(active.all()):
                tokens_in, tokens_grad = tokens_in[:, active], tokens_grad[:, active]
            g_parts.append(tokens_grad.reshape(n_samples, -1, tokens_grad.shape[-1]))
            a_parts.append(tokens_in.reshape(n_samples, -1, tokens_in.shape[-1]))
        g, a = torch.cat(g_parts, dim=1), torch.cat(a_parts, dim=1)
        if g.dtype in _HALF or a.dtype in _HALF:  # a forward under autocast: accumulate in float32
            g, a = g.float(), a.float()
        if self.groups > 1:
            return self._formed_by_group(g, a)
        return g, self._with_bias_column(a)

    def _with_bias_column(self, a: torch.Tensor) -> torch.Tensor:
        return torch.cat([a, a.new_ones((*a.shape[:-1], 1))], dim=-1) if self.has_bias else a

    def _formed_by_group(self, g: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(I, G)`` for a grouped convolution: ``G``'s rows of group ``j`` are ``sum_t g_t[j] u_t[j]^T``."""
        n_samples, _, d_out = g.shape
        by_group = self._with_bias_column(a.unflatten(-1, (self.groups, -1)))  # (S, M, groups, in / groups [+ 1])
        formed = torch.einsum("smgo,smgi->sgoi", g.unflatten(-1, (self.groups, -1)), by_group).flatten(1, 2)
        identity = torch.eye(d_out, dtype=formed.dtype, device=formed.device).expand(n_samples, d_out, d_out)
        return identity, formed

    def _input_tokens(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(rows, tokens, features)``: a linear layer's inputs, or the patches a convolution's kernel covers."""
        conv = self.conv
        if conv is None or _is_pointwise(conv):
            return self._tokens(inputs)
        padded = F.pad(inputs, conv._reversed_padding_repeated_twice, mode=_PADDING_MODES[conv.padding_mode])
        if isinstance(conv, nn.Conv1d):  # a convolution over a 1 x L image
            padded = padded.unsqueeze(2)
            kernel, dilation, stride = ((1, *conv.kernel_size), (1, *conv.dilation), (1, *conv.stride))
        else:
            kernel, dilation, stride = conv.kernel_size, conv.dilation, conv.stride
        return F.unfold(padded, kernel, dilation=dilation, stride=stride).transpose(1, 2)

    def _tokens(self, tensor: torch.Tensor) -> torch.Tensor:
        """``(rows, tokens, features)`` view of a layer input or output gradient (a convolution's positions
        are its tokens)."""
        if self.conv is not None:
            return tensor.flatten(2).transpose(1, 2)
        return tensor.reshape(tensor.shape[0], -1, tensor.shape[-1])


def check_capture(module: nn.Module, layer_path: str, embed) -> None:
    """Refuse a target layer whose recorded gradient is not autograd's gradient of its weight.

    The hook sees only the layer's own calls. A weight that the forward also uses
    another way (``F.conv2d(x, layer.weight)`` beside ``layer(x)``, a weight tied
    to a module the hook cannot see) gets a gradient from that use too, which
    the factors would silently leave out. So, once at ``fit``, for ``embed()``
    (one sample's embedding) and the loss ``<embedding, r>`` with a seeded
    random ``r``, the gradient formed from the factors is compared with
    ``torch.autograd.grad`` of the same loss with respect to the layer's weight
    (and bias); they must agree to float32 rounding. A zero or non-finite
    gradient proves nothing and is let through (the transform names it).
    """
    layer = resolve_layer(module, layer_path)
    params = [layer.weight] + ([layer.bias] if layer.bias is not None else [])
    with GradientCapture(module, layer_path) as capture, torch.no_grad():
        embedding = embed()
        direction = torch.randn(embedding.shape, generator=torch.Generator().manual_seed(0)).to(embedding)
        g, a = capture.factors((embedding * direction).sum(), 1, keep_all_tokens=True)
        recorded = (g[0].transpose(0, 1) @ a[0]).double()
    flags = [param.requires_grad for param in params]
    try:
        with torch.enable_grad():
            for param in params:
                param.requires_grad_(True)
            grads = torch.autograd.grad((embed() * direction).sum(), params, allow_unused=True)
    finally:
        for param, flag in zip(params, flags, strict=True):
            param.requires_grad_(flag)
    true = torch.cat(
        [(torch.zeros_like(p) if d is None else d).reshape(len(p), -1) for p, d in zip(params, grads, strict=True)],
        dim=1,
    ).double()
    scale = float(true.norm())
    if scale == 0 or not (torch.isfinite(true).all() and torch.isfinite(recorded).all()):
        return
    difference = float((recorded.to(true.device) - true).norm()) / scale
    if difference > 1e-3:
        raise ValueError(
            f"the gradient of the target layer {layer_path!r} seen through its calls differs from autograd's "
            f"gradient of its weight by {difference:.2g} (relative): the forward also uses its weight another way "
            "(e.g. F.conv2d(x, layer.weight) or F.linear beside the layer's own call), a use the per-sample "
            "gradients would leave out. Choose a layer whose weight is used only through its calls."
        )


def _passed_on(recorded: torch.Tensor) -> torch.Tensor:
    """What the forward goes on with: a copy of the recorded output, so that an in-place operation after the
    layer (``nn.ReLU(inplace=True)`` right after a convolution, as in VGG) modifies the copy, neither a leaf
    (which autograd refuses to modify in place) nor the recorded output (whose gradient would then be taken
    after that operation)."""
    return recorded.clone()


# nn.Conv*'s padding modes -> F.pad's
_PADDING_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}


_HALF = (torch.float16, torch.bfloat16)


def _attention_values(attention: nn.MultiheadAttention, args, kwargs) -> torch.Tensor:
    """Input of ``attention.out_proj`` for this call: the attention with an identity output projection."""
    names = (
        "query",
        "key",
        "value",
        "key_padding_mask",
        "need_weights",
        "attn_mask",
        "average_attn_weights",
        "is_causal",
    )
    call = dict(zip(names, args, strict=False)) | kwargs
    query, key, value = call["query"], call["key"], call["value"]
    if attention.batch_first:
        query, key, value = (tensor.transpose(0, 1) for tensor in (query, key, value))
    width = attention.out_proj.in_features
    identity = torch.eye(width, dtype=query.dtype, device=query.device)
    values, _ = F.multi_head_attention_forward(
        query,
        key,
        value,
        attention.embed_dim,
        attention.num_heads,
        attention.in_proj_weight,
        attention.in_proj_bias,
        attention.bias_k,
        attention.bias_v,
        attention.add_zero_attn,
        0.0,
        identity,
        None,
        training=False,
        key_padding_mask=call.get("key_padding_mask"),
        need_weights=False,
        attn_mask=call.get("attn_mask"),
        use_separate_proj_weight=not attention._qkv_same_embed_dim,
        q_proj_weight=attention.q_proj_weight,
        k_proj_weight=attention.k_proj_weight,
        v_proj_weight=attention.v_proj_weight,
        is_causal=call.get("is_causal", False),
    )
    return values.transpose(0, 1) if attention.batch_first else values
