"""Backbone adapters and the resolver for string specs.

A backbone adapter knows how to prepare raw views for its module, how to get
an embedding out of it, and which layer to take gradients from by default.
"""

from __future__ import annotations

from .._utils.freeze import frozen_eval
from ._base import Backbone, check_module
from ._checkpoints import CheckpointError
from ._hub import WeightsNotFoundError
from ._registry import FAMILIES, MODALITIES, Family, declared_modality, infer_modality, module_family, resolve_backbone
from .audio import AudioBackbone
from .huggingface import HuggingFaceTextBackbone
from .image import IMAGENET_MEAN, IMAGENET_STD, ImageBackbone
from .mel import LogMelSpectrogram
from .open_clip import OpenCLIPImageBackbone, OpenCLIPTextBackbone
from .resemblyzer import ResemblyzerBackbone
from .sentence_transformers import SentenceTransformerBackbone
from .tabular import TabularBackbone, TabularMLP, make_mlp_encoder
from .text import TextBackbone
from .timm import TimmBackbone

__all__ = [
    "FAMILIES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODALITIES",
    "AudioBackbone",
    "Backbone",
    "CheckpointError",
    "Family",
    "HuggingFaceTextBackbone",
    "ImageBackbone",
    "LogMelSpectrogram",
    "OpenCLIPImageBackbone",
    "OpenCLIPTextBackbone",
    "ResemblyzerBackbone",
    "SentenceTransformerBackbone",
    "TabularBackbone",
    "TabularMLP",
    "TextBackbone",
    "TimmBackbone",
    "WeightsNotFoundError",
    "check_module",
    "declared_modality",
    "frozen_eval",
    "infer_modality",
    "make_mlp_encoder",
    "module_family",
    "resolve_backbone",
]
