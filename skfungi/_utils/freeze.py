"""Run a user's module frozen and in eval mode, then put it back as it was."""

from __future__ import annotations

from contextlib import contextmanager

import torch.nn as nn

__all__ = ["frozen_eval"]


@contextmanager
def frozen_eval(module: nn.Module):
    """Eval mode and ``requires_grad=False`` everywhere inside; restored on exit.

    Every submodule's ``training`` flag and every parameter's ``requires_grad``
    are recorded and restored exactly, even if the body raises.
    """
    training = [(sub, sub.training) for sub in module.modules()]
    requires_grad = [(param, param.requires_grad) for param in module.parameters()]
    try:
        module.eval()
        for param, _ in requires_grad:
            param.requires_grad_(False)
        yield module
    finally:
        for sub, flag in training:
            sub.training = flag
        for param, flag in requires_grad:
            param.requires_grad_(flag)
