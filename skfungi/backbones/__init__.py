"""Backbone adapters and the resolver for string specs.

A backbone adapter knows how to prepare raw views for its module, how to get
an embedding out of it, and which layer to take gradients from by default.
"""

from __future__ import annotations

from .._core.freeze import frozen_eval
from ._base import Backbone
from ._registry import MODALITIES, declared_modality, infer_modality, resolve_backbone
from .audio import AudioBackbone
from .mel import LogMelSpectrogram
from .resemblyzer import ResemblyzerBackbone
from .huggingface import HuggingFaceTextBackbone
from .image import IMAGENET_MEAN, IMAGENET_STD, ImageBackbone
from .open_clip import OpenCLIPImageBackbone, OpenCLIPTextBackbone
from .tabular import TabularBackbone, TabularMLP, make_mlp_encoder
from .text import TextBackbone
from .timm import TimmBackbone

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODALITIES",
    "AudioBackbone",
    "Backbone",
    "HuggingFaceTextBackbone",
    "ImageBackbone",
    "LogMelSpectrogram",
    "OpenCLIPImageBackbone",
    "OpenCLIPTextBackbone",
    "ResemblyzerBackbone",
    "TabularBackbone",
    "TabularMLP",
    "TextBackbone",
    "TimmBackbone",
    "declared_modality",
    "frozen_eval",
    "infer_modality",
    "make_mlp_encoder",
    "resolve_backbone",
]
