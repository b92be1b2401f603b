"""Backbone adapters and the resolver for string specs.

A backbone adapter knows how to prepare raw views for its module, how to get
an embedding out of it, and which layer to take gradients from by default.
"""

from __future__ import annotations

import torch.nn as nn

from ._base import Backbone
from ._freeze import frozen_eval
from .image import IMAGENET_MEAN, IMAGENET_STD, ImageBackbone
from .timm import TimmBackbone, is_timm_model

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Backbone",
    "ImageBackbone",
    "TimmBackbone",
    "frozen_eval",
    "resolve_backbone",
]

_SPEC_BUILDERS = {"timm": TimmBackbone}


def resolve_backbone(backbone) -> Backbone:
    """Return an adapter for a module, a string spec or an adapter.

    String specs are ``"<family>:<name>"``; families: ``timm``.
    """
    if isinstance(backbone, Backbone):
        return backbone
    if isinstance(backbone, str):
        family, sep, name = backbone.partition(":")
        if not sep or family not in _SPEC_BUILDERS or not name:
            raise ValueError(
                f"backbone spec {backbone!r} is not understood; use '<family>:<name>' with family "
                f"in {sorted(_SPEC_BUILDERS)}, e.g. 'timm:vit_small_patch16_224'."
            )
        return _SPEC_BUILDERS[family](name)
    if isinstance(backbone, nn.Module):
        return TimmBackbone(backbone) if is_timm_model(backbone) else ImageBackbone(backbone)
    raise TypeError(
        "backbone must be a torch.nn.Module, a string spec such as 'timm:vit_small_patch16_224', "
        f"or a backbone adapter; got {type(backbone).__name__}."
    )
