"""Inputs on PyTorch's meta device hold no values: refuse them before anything is computed."""

from __future__ import annotations

import torch

__all__ = ["refuse_meta"]


def refuse_meta(value, where: str) -> None:
    """A clear error if ``value`` is a tensor on the meta device (``where`` names it in the message)."""
    if isinstance(value, torch.Tensor) and value.is_meta:
        raise ValueError(
            f"{where} is a tensor on the meta device: it has a shape but no values. Pass real data "
            "(materialise it on the CPU or an accelerator first)."
        )
