"""The losses by name, and the view settings of each ``views`` preset (docs/usage.md, "View presets")."""

from __future__ import annotations

from .dino import DINOLoss
from .kl import KLLoss
from .simclr import SimCLRLoss

__all__ = ["LOSSES", "VIEW_PRESETS", "check_view_preset", "named_loss"]

LOSSES = {"kl": KLLoss, "dino": DINOLoss, "simclr": SimCLRLoss}

# Loss settings of each preset, applied to losses given by name. Only image views change;
# text, audio and tabular views are the same in all.
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


def named_loss(name: str, views: str = "paper"):
    """The loss ``name`` (``"kl"``, ``"dino"``, ``"simclr"``) with the settings of the ``views`` preset."""
    check_view_preset(views)
    return LOSSES[name](**VIEW_PRESETS[views].get(name, {}))
