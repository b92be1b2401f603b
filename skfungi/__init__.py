"""skfungi: FUNGI features (frozen embeddings + self-supervised gradients) for scikit-learn.

Public names are imported on first use: ``from skfungi import HNSWTransformer``
does not import torch (about 0.5 GB of resident memory), which matters next to
a million-point neighbour index.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # static imports for type checkers, IDEs and documentation tools
    from ._transformer import FungiTransformer
    from .backbones import (
        AudioBackbone,
        CheckpointError,
        HuggingFaceTextBackbone,
        ImageBackbone,
        OpenCLIPImageBackbone,
        OpenCLIPTextBackbone,
        ResemblyzerBackbone,
        SentenceTransformerBackbone,
        TabularBackbone,
        TabularMLP,
        TextBackbone,
        TimmBackbone,
        WeightsNotFoundError,
    )
    from .dense import DenseFungiTransformer, InContextSegmenter
    from .losses import DINOLoss, KLLoss, SimCLRLoss, ViewAverage
    from .neighbors import HNSWTransformer
    from .projection import GaussianProjection, KroneckerProjection, RademacherProjection, SRHTProjection
    from .protocols.blocks import FungiBlockSelector

from ._version import __version__

# public name -> submodule that defines it
_EXPORTS = {
    "FungiBlockSelector": ".protocols.blocks",
    "GaussianProjection": ".projection",
    "KroneckerProjection": ".projection",
    "RademacherProjection": ".projection",
    "SRHTProjection": ".projection",
    "FungiTransformer": "._transformer",
    "AudioBackbone": ".backbones",
    "CheckpointError": ".backbones",
    "HuggingFaceTextBackbone": ".backbones",
    "ImageBackbone": ".backbones",
    "OpenCLIPImageBackbone": ".backbones",
    "OpenCLIPTextBackbone": ".backbones",
    "ResemblyzerBackbone": ".backbones",
    "SentenceTransformerBackbone": ".backbones",
    "TabularBackbone": ".backbones",
    "TabularMLP": ".backbones",
    "TextBackbone": ".backbones",
    "TimmBackbone": ".backbones",
    "WeightsNotFoundError": ".backbones",
    "DINOLoss": ".losses",
    "KLLoss": ".losses",
    "SimCLRLoss": ".losses",
    "ViewAverage": ".losses",
    "HNSWTransformer": ".neighbors",
    "DenseFungiTransformer": ".dense",
    "InContextSegmenter": ".dense",
}

__all__ = [
    "AudioBackbone",
    "CheckpointError",
    "DINOLoss",
    "DenseFungiTransformer",
    "FungiBlockSelector",
    "FungiTransformer",
    "GaussianProjection",
    "HNSWTransformer",
    "HuggingFaceTextBackbone",
    "ImageBackbone",
    "InContextSegmenter",
    "KLLoss",
    "KroneckerProjection",
    "OpenCLIPImageBackbone",
    "OpenCLIPTextBackbone",
    "RademacherProjection",
    "ResemblyzerBackbone",
    "SRHTProjection",
    "SentenceTransformerBackbone",
    "SimCLRLoss",
    "TabularBackbone",
    "TabularMLP",
    "TextBackbone",
    "TimmBackbone",
    "ViewAverage",
    "WeightsNotFoundError",
    "__version__",
]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'skfungi' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
