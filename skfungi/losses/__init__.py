"""FUNGI's self-supervised losses, with the paper's settings as defaults."""

from ._base import FeatureBlock, FungiLoss, LossContext
from .dino import DINOLoss
from .kl import KLLoss
from .presets import LOSSES, VIEW_PRESETS, check_view_preset, named_loss
from .simclr import SimCLRLoss
from .view_average import SUFFIX, ViewAverage

__all__ = [
    "VIEW_PRESETS",
    "DINOLoss",
    "FeatureBlock",
    "FungiLoss",
    "KLLoss",
    "LossContext",
    "SimCLRLoss",
    "ViewAverage",
    "check_view_preset",
    "make_loss",
]


def make_loss(loss, views: str = "paper") -> FeatureBlock:
    """A block from a name or a block object.

    ``"kl"``, ``"dino"``, ``"simclr"`` give the loss (its gradient block) and
    ``"kl_views"``, ``"dino_views"``, ``"simclr_views"`` its
    :class:`ViewAverage` (the mean embedding of its views), with the settings
    of the ``views`` preset (see ``VIEW_PRESETS``); a block object is returned
    as it is.
    """
    check_view_preset(views)
    if isinstance(loss, FeatureBlock):
        return loss
    if isinstance(loss, str):
        name = loss.lower()
        if name in LOSSES:
            return named_loss(name, views)
        if name.endswith(SUFFIX) and name.removesuffix(SUFFIX) in LOSSES:
            return ViewAverage(named_loss(name.removesuffix(SUFFIX), views))
    names = sorted(LOSSES) + [name + SUFFIX for name in sorted(LOSSES)]
    raise ValueError(f"unknown loss {loss!r}; use one of {names} or a FungiLoss object.")
