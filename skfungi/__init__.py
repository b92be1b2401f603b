"""skfungi: FUNGI features (frozen embeddings + self-supervised gradients) for scikit-learn."""

from ._projection import GaussianProjection, KroneckerProjection, RademacherProjection
from ._transformer import FungiTransformer
from .backbones import ImageBackbone, TabularBackbone, TabularMLP, TimmBackbone
from .losses import DINOLoss, KLLoss, SimCLRLoss

__version__ = "0.1.0"

__all__ = [
    "DINOLoss",
    "FungiTransformer",
    "GaussianProjection",
    "ImageBackbone",
    "KLLoss",
    "KroneckerProjection",
    "RademacherProjection",
    "SimCLRLoss",
    "TabularBackbone",
    "TabularMLP",
    "TimmBackbone",
    "__version__",
]
