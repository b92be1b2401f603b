"""FUNGI's self-supervised losses, with the paper's settings as defaults."""

from ._base import FungiLoss, LossContext
from .dino import DINOLoss
from .kl import KLLoss
from .simclr import SimCLRLoss

__all__ = [
    "VIEW_PRESETS",
    "DINOLoss",
    "FungiLoss",
    "KLLoss",
    "LossContext",
    "SimCLRLoss",
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
    """A loss object from a name (``"kl"``, ``"dino"``, ``"simclr"``) or a loss object.

    A name gives the loss with the settings of the ``views`` preset (see
    ``VIEW_PRESETS``); a loss object is returned as it is.
    """
    check_view_preset(views)
    if isinstance(loss, FungiLoss):
        return loss
    if isinstance(loss, str) and loss.lower() in LOSSES:
        name = loss.lower()
        return LOSSES[name](**VIEW_PRESETS[views].get(name, {}))
    raise ValueError(f"unknown loss {loss!r}; use one of {sorted(LOSSES)} or a FungiLoss object.")
