"""timm models: by instance or by name (``"timm:vit_small_patch16_224"``)."""

from __future__ import annotations

import os

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
        super().__init__(
            model,
            layer=layer or _default_layer(model),
            embed=timm_embedding,
            input_size=size,
            mean=tuple(config.get("mean", IMAGENET_MEAN)),
            std=tuple(config.get("std", IMAGENET_STD)),
            in_channels=channels,
        )


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


def _default_layer(model: nn.Module) -> str | None:
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, nn.Sequential) and len(blocks) and hasattr(blocks[-1], "attn"):
        if isinstance(getattr(blocks[-1].attn, "proj", None), nn.Linear):
            return f"blocks.{len(blocks) - 1}.attn.proj"
    return None
