"""Audio views on feature frames: uniform noise and a time roll (SSAST's augmentation)."""

from __future__ import annotations

import torch

__all__ = ["noise_and_roll", "simclr_views"]


def noise_and_roll(frames: torch.Tensor, generator: torch.Generator, noise_scale: float, max_roll: int) -> torch.Tensor:
    """``frames + U(0, 1) * r * noise_scale`` with ``r ~ U(0, 1)``, rolled by ``randint(-max_roll, max_roll)`` frames.

    ``frames`` has time on its first axis. With ``noise_scale=0.1`` this is
    the paper's "uniform noise scaled by r/10"; the roll is drawn from
    ``[-max_roll, max_roll)`` as numpy's ``randint`` does.
    """
    strength = float(torch.rand((), generator=generator, dtype=torch.float64)) * noise_scale
    noise = torch.rand(frames.shape, generator=generator, dtype=torch.float64).to(frames.dtype)
    shift = int(torch.randint(-max_roll, max_roll, (), generator=generator)) if max_roll > 0 else 0
    return torch.roll(frames + noise * strength, shifts=shift, dims=0)


def simclr_views(frames: torch.Tensor, settings, backbone, generator: torch.Generator, count: int) -> list:
    """``count`` copies of the feature frames with uniform noise of ``settings.noise_scale``, each rolled by
    up to ``settings.max_roll`` frames."""
    views = [noise_and_roll(frames, generator, settings.noise_scale, settings.max_roll) for _ in range(count)]
    return [torch.stack(views)]
