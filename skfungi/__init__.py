"""skfungi: FUNGI features (frozen embeddings + self-supervised gradients) for scikit-learn."""

from ._block_selection import FungiBlockSelector
from ._projection import GaussianProjection, KroneckerProjection, RademacherProjection
from ._transformer import FungiTransformer
from .backbones import (
    AudioBackbone,
    HuggingFaceTextBackbone,
    ImageBackbone,
    OpenCLIPImageBackbone,
    OpenCLIPTextBackbone,
    ResemblyzerBackbone,
    TabularBackbone,
    TabularMLP,
    TextBackbone,
    TimmBackbone,
)
from .losses import DINOLoss, KLLoss, SimCLRLoss
from .neighbors import HNSWTransformer

__version__ = "0.1.0"

__all__ = [
    "AudioBackbone",
    "DINOLoss",
    "FungiBlockSelector",
    "FungiTransformer",
    "GaussianProjection",
    "HNSWTransformer",
    "HuggingFaceTextBackbone",
    "ImageBackbone",
    "KLLoss",
    "KroneckerProjection",
    "OpenCLIPImageBackbone",
    "OpenCLIPTextBackbone",
    "RademacherProjection",
    "ResemblyzerBackbone",
    "SimCLRLoss",
    "TabularBackbone",
    "TabularMLP",
    "TextBackbone",
    "TimmBackbone",
    "__version__",
]
