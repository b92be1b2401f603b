"""timm models: by instance or by name (``"timm:vit_small_patch16_224"``)."""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch
import torch.nn as nn

from .image import IMAGENET_MEAN, IMAGENET_STD, ImageBackbone

__all__ = ["TimmBackbone", "is_timm_model", "timm_backbone"]


def is_timm_model(module: nn.Module) -> bool:
    """True for timm models (defined in timm, with ``forward_features`` and ``forward_head``)."""
    return (
        type(module).__module__.startswith("timm.")
        and hasattr(module, "forward_head")
        and hasattr(module, "forward_features")
    )


def timm_embedding(module: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The embedding as timm pools it: ``forward_head(..., pre_logits=True)``."""
    return module.forward_head(module.forward_features(inputs), pre_logits=True)


class TimmBackbone(ImageBackbone):
    """A timm model as a FUNGI backbone.

    Parameters
    ----------
    model : str or torch.nn.Module
        A timm model name (created with ``timm.create_model``) or an instance.
    pretrained : bool or str, default=False
        For a name: ``False`` for random weights, or the path of a local
        weights file (``.pth`` / ``.safetensors``). Nothing is downloaded.
    layer : str, optional
        Target layer; default ``blocks.<last>.attn.proj`` for ViTs.

    Notes
    -----
    Views of another side than the input size (``views="fast"``) are
    forwarded at that side: a timm ``VisionTransformer`` interpolates its
    position embeddings to the view's patch grid (timm's own
    ``dynamic_img_size`` path, switched on only for that forward) and takes
    sides that are multiples of its patch size; a CNN (no patch embedding module)
    takes any side; other timm models with a patch embedding (Swin, MLP-Mixer,
    ...) get every view at the input size.

    Examples
    --------
    >>> from skfungi.backbones import TimmBackbone
    >>> backbone = TimmBackbone("vit_tiny_patch16_224")
    >>> backbone.default_layer, backbone.input_size
    ('blocks.11.attn.proj', 224)
    """

    def __init__(self, model: str | nn.Module, *, pretrained: bool | str = False, layer: str | None = None):
        if isinstance(model, str):
            model = _create(model, pretrained)
        elif pretrained:
            raise ValueError("pretrained applies to a model name; load weights into your instance yourself.")
        if not is_timm_model(model):
            raise TypeError(f"{type(model).__name__} is not a timm model (no forward_features / forward_head).")
        config = getattr(model, "pretrained_cfg", None) or {}
        channels, size = _input_shape(model, config)
        self.patch_size = _square_patch_size(model)
        super().__init__(
            model,
            layer=layer or _default_layer(model),
            embed=timm_embedding,
            input_size=size,
            mean=tuple(config.get("mean", IMAGENET_MEAN)),
            std=tuple(config.get("std", IMAGENET_STD)),
            in_channels=channels,
            flexible_size=self.patch_size is not None or not _has_patch_embedding(model),
        )

    def forward_size(self, size: int) -> int:
        """``size`` rounded to the nearest multiple of a ViT's patch size (at least one patch);
        ``size`` for a CNN; the input size for other timm models."""
        if self.patch_size is None:
            return super().forward_size(size)
        return max(1, round(size / self.patch_size)) * self.patch_size

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.patch_size is None or inputs.shape[-1] == self.input_size:
            return super().embed(inputs)
        with _interpolated_position_embeddings(self.module):
            return super().embed(inputs)


def timm_backbone(model: str | nn.Module, modality: str = "auto") -> TimmBackbone:
    """Registry entry for ``"timm:<name>"`` specs and timm instances (images only)."""
    if modality not in ("auto", "image"):
        raise ValueError(f"timm models are image backbones; modality={modality!r} is not possible.")
    return TimmBackbone(model)


def _create(name: str, pretrained: bool | str) -> nn.Module:
    import timm

    if pretrained is True:
        raise ValueError(
            "pretrained=True would download weights, and skfungi never downloads; "
            "pass the path of a local weights file instead."
        )
    if pretrained:
        if not os.path.isfile(pretrained):
            raise FileNotFoundError(f"timm weights file not found: {pretrained!r}")
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": os.fspath(pretrained)})
    return timm.create_model(name, pretrained=False)


def _input_shape(model: nn.Module, config: dict) -> tuple[int, int]:
    """(channels, side) from the model's config, else from its patch embedding."""
    if "input_size" in config:
        return int(config["input_size"][0]), int(config["input_size"][-1])
    patch_embed = getattr(model, "patch_embed", None)
    size = getattr(patch_embed, "img_size", None) or (224, 224)
    proj = getattr(patch_embed, "proj", None)
    return int(getattr(proj, "in_channels", 3)), int(size[-1])


def _square_patch_size(model: nn.Module) -> int | None:
    """The patch side of a timm ``VisionTransformer`` whose position embeddings timm can interpolate."""
    from timm.layers import PatchEmbed
    from timm.models.vision_transformer import VisionTransformer

    patch_embed = getattr(model, "patch_embed", None)
    if not isinstance(model, VisionTransformer) or not isinstance(patch_embed, PatchEmbed):
        return None
    height, width = patch_embed.patch_size
    return int(height) if height == width else None


def _has_patch_embedding(model: nn.Module) -> bool:
    """Whether the model cuts its input into patches (a transformer or mixer, not a CNN)."""
    from timm.layers import PatchEmbed

    return any(isinstance(module, PatchEmbed) for module in model.modules())


@contextmanager
def _interpolated_position_embeddings(model: nn.Module):
    """Switch on timm's ``dynamic_img_size`` path for one forward, then restore the model's flags."""
    from timm.layers import Format

    patch_embed = model.patch_embed
    saved = (model.dynamic_img_size, patch_embed.strict_img_size, patch_embed.flatten, patch_embed.output_fmt)
    # what VisionTransformer(dynamic_img_size=True) sets: the patch grid stays 2-D until the
    # position embeddings, resampled to it, are added
    model.dynamic_img_size = True
    patch_embed.strict_img_size, patch_embed.flatten, patch_embed.output_fmt = False, False, Format.NHWC
    try:
        yield
    finally:
        model.dynamic_img_size = saved[0]
        patch_embed.strict_img_size, patch_embed.flatten, patch_embed.output_fmt = saved[1:]


def _default_layer(model: nn.Module) -> str | None:
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, nn.Sequential) and len(blocks) and hasattr(blocks[-1], "attn"):
        if isinstance(getattr(blocks[-1].attn, "proj", None), nn.Linear):
            return f"blocks.{len(blocks) - 1}.attn.proj"
    return None
