"""skfungi: FUNGI features (frozen embeddings + self-supervised gradients) for scikit-learn."""

from ._projection import GaussianProjection, KroneckerProjection, RademacherProjection
from ._transformer import FungiTransformer
from .backbones import AudioBackbone, ImageBackbone, ResemblyzerBackbone, TabularBackbone, TabularMLP, TimmBackbone
from .losses import DINOLoss, KLLoss, SimCLRLoss

__version__ = "0.1.0"

__all__ = [
    "AudioBackbone",
    "DINOLoss",
    "FungiTransformer",
    "GaussianProjection",
    "ImageBackbone",
    "KLLoss",
    "KroneckerProjection",
    "RademacherProjection",
    "ResemblyzerBackbone",
    "SimCLRLoss",
    "TabularBackbone",
    "TabularMLP",
    "TimmBackbone",
    "__version__",
]
