"""FUNGI's self-supervised losses, with the paper's settings as defaults."""

from ._base import FungiLoss, LossContext
from .dino import DINOLoss
from .kl import KLLoss
from .simclr import SimCLRLoss
from .view_average import SUFFIX, ViewAverage

__all__ = [
    "VIEW_PRESETS",
    "DINOLoss",
    "FungiLoss",
    "KLLoss",
    "LossContext",
    "SimCLRLoss",
    "ViewAverage",
    "check_view_preset",
    "make_loss",
]

LOSSES = {"kl": KLLoss, "dino": DINOLoss, "simclr": SimCLRLoss}

# Loss settings of each ``views`` preset, applied to losses given by name (docs/usage.md,
# "View presets"). Only image views change; text, audio and tabular views are the same in all.
VIEW_PRESETS = {
    "paper": {},
    "fast": {
        "dino": {"local_crop_size": 0.43},  # 96 px at 224, as DINO itself
        "simclr": {"grid_size": 4, "resize_patches": False},  # 16 patches at their own 112 px
    },
}


def check_view_preset(views) -> None:
    """A clear error unless ``views`` names a preset."""
    if not isinstance(views, str) or views not in VIEW_PRESETS:
        raise ValueError(f"views must be one of {sorted(VIEW_PRESETS)}, got {views!r}.")


def make_loss(loss, views: str = "paper") -> FungiLoss:
    """A block from a name or a loss object.

    ``"kl"``, ``"dino"``, ``"simclr"`` give the loss (its gradient block) and
    ``"kl_views"``, ``"dino_views"``, ``"simclr_views"`` its
    :class:`ViewAverage` (the mean embedding of its views), with the settings
    of the ``views`` preset (see ``VIEW_PRESETS``); a loss object is returned
    as it is.
    """
    check_view_preset(views)
    if isinstance(loss, FungiLoss):
        return loss
    if isinstance(loss, str):
        name = loss.lower()
        if name in LOSSES:
            return LOSSES[name](**VIEW_PRESETS[views].get(name, {}))
        if name.endswith(SUFFIX) and name.removesuffix(SUFFIX) in LOSSES:
            return ViewAverage(make_loss(name.removesuffix(SUFFIX), views))
    names = sorted(LOSSES) + [name + SUFFIX for name in sorted(LOSSES)]
    raise ValueError(f"unknown loss {loss!r}; use one of {names} or a FungiLoss object.")
