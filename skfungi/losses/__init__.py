"""FUNGI's self-supervised losses, with the paper's settings as defaults."""

from ._base import FungiLoss, LossContext
from .dino import DINOLoss
from .kl import KLLoss
from .simclr import SimCLRLoss

__all__ = ["DINOLoss", "FungiLoss", "KLLoss", "LossContext", "SimCLRLoss", "make_loss"]

LOSSES = {"kl": KLLoss, "dino": DINOLoss, "simclr": SimCLRLoss}


def make_loss(loss) -> FungiLoss:
    """A loss object from a name (``"kl"``, ``"dino"``, ``"simclr"``) or a loss object."""
    if isinstance(loss, FungiLoss):
        return loss
    if isinstance(loss, str) and loss.lower() in LOSSES:
        return LOSSES[loss.lower()]()
    raise ValueError(f"unknown loss {loss!r}; use one of {sorted(LOSSES)} or a FungiLoss object.")
