"""Patch tokens of an image backbone: a ``(N, C, h, w)`` grid of features per batch of images.

A dense feature needs one vector per image region, not one per image. What
the "patch tokens" are depends on the family:

- timm Vision Transformers: the output of ``forward_features`` (after the
  final norm) without its prefix (class / register) tokens, laid out on the
  patch grid; inputs of another side than the model's get interpolated
  position embeddings (timm's ``dynamic_img_size`` path);
- timm CNNs: the ``forward_features`` map (channels first);
- the offline MobileNetV2 (``"skfungi:mobilenet_v2"``): the ``features`` map;
- any other module: a ``tokens(module, inputs) -> (N, C, h, w)`` function
  given by the user (a module-level function, so that a fitted estimator
  pickles).

:func:`layer_token_rows` then matches the target layer's tokens, as the
gradient capture returns them, with these grid positions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from ..backbones.image import ImageBackbone
from ..backbones.mobilenet import embed_mobilenet
from ..backbones.timm import TimmBackbone, has_patch_embedding, interpolated_position_embeddings

__all__ = [
    "grid_tokens",
    "layer_token_rows",
    "mobilenet_tokens",
    "timm_cnn_tokens",
    "timm_vit_tokens",
    "token_function",
]

TokenFunction = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def timm_vit_tokens(module: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Patch tokens of a timm ``VisionTransformer``, at any input side that is a multiple of its patch."""
    patch = module.patch_embed.patch_size
    grid = (inputs.shape[-2] // patch[0], inputs.shape[-1] // patch[1])
    if tuple(inputs.shape[-2:]) == tuple(module.patch_embed.img_size):
        features = module.forward_features(inputs)
    else:
        with interpolated_position_embeddings(module):
            features = module.forward_features(inputs)
    patches = features[:, module.num_prefix_tokens :]
    return patches.transpose(1, 2).unflatten(2, grid)


def timm_cnn_tokens(module: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The last feature map of a timm CNN (``forward_features``, channels first)."""
    return module.forward_features(inputs)


def mobilenet_tokens(module: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """MobileNetV2's last feature map (``module.features``, 1280 channels at stride 32)."""
    return module.features(inputs)


def token_function(backbone: ImageBackbone, tokens="auto") -> TokenFunction:
    """The function giving ``backbone``'s patch tokens: ``tokens`` itself, or the family's (``"auto"``)."""
    if callable(tokens):
        return tokens
    if tokens != "auto":
        raise ValueError(f"tokens must be 'auto' or a function tokens(module, inputs) -> (N, C, h, w); got {tokens!r}.")
    if isinstance(backbone, TimmBackbone):
        if backbone.patch_size is not None:
            return timm_vit_tokens
        if getattr(backbone.module, "output_fmt", "NCHW") == "NCHW" and not has_patch_embedding(backbone.module):
            return timm_cnn_tokens
    elif isinstance(backbone, ImageBackbone) and backbone.embed_fn is embed_mobilenet:
        return mobilenet_tokens
    raise TypeError(
        f"skfungi does not know the patch tokens of {backbone!r}; pass tokens=<function>(module, inputs) "
        "returning an (N, C, h, w) feature grid (a module-level function, so that the estimator pickles)."
    )


def grid_tokens(grid: torch.Tensor, n_images: int) -> torch.Tensor:
    """``(N, h * w, C)`` rows of a token function's ``(N, C, h, w)`` output, checked."""
    if not isinstance(grid, torch.Tensor) or grid.ndim != 4 or grid.shape[0] != n_images:
        shape = tuple(grid.shape) if isinstance(grid, torch.Tensor) else type(grid).__name__
        raise ValueError(f"the token function must return an (N, C, h, w) tensor with N = {n_images}; got {shape}.")
    return grid.flatten(2).transpose(1, 2)


def layer_token_rows(n_layer_tokens: int, n_patches: int, n_prefix: int, layer_path: str) -> slice:
    """Which of the target layer's tokens are the patch tokens, in grid order.

    The gradient capture keeps every token of the layer (``keep_all_tokens``):
    a ViT's prefix tokens (class, registers) come first, then the patch grid.
    Any other count means the layer does not work on the patch grid.
    """
    if n_layer_tokens == n_patches:
        return slice(0, n_patches)
    if n_prefix and n_layer_tokens == n_patches + n_prefix:
        return slice(n_prefix, n_prefix + n_patches)
    raise ValueError(
        f"the target layer {layer_path!r} has {n_layer_tokens} tokens, but the patch grid has "
        f"{n_patches}: dense FUNGI needs a layer applied to each patch token (a ViT block's linear layers, or a "
        "1x1 convolution at the resolution of the token grid)."
    )
