"""Tabular views: feature dropout and Gaussian noise."""

from __future__ import annotations

import torch

__all__ = ["dropout_and_noise", "simclr_views"]


def dropout_and_noise(
    row: torch.Tensor, generator: torch.Generator, drop_prob: float, noise_scale: float, scale: torch.Tensor
) -> torch.Tensor:
    """Zero each feature with probability ``drop_prob``, then add ``N(0, (noise_scale * scale)^2)`` noise.

    ``scale`` is the per-feature spread measured on the training rows, so the
    noise is comparable across features of different units.
    """
    keep = torch.rand(row.shape, generator=generator, dtype=torch.float64) >= drop_prob
    noise = torch.randn(row.shape, generator=generator, dtype=torch.float64)
    return (row * keep.to(row.dtype) + (noise * noise_scale).to(row.dtype) * scale).to(row.dtype)


def simclr_views(row: torch.Tensor, settings, backbone, generator: torch.Generator, count: int) -> list:
    """``count`` copies of the row, each feature zeroed with ``settings.drop_prob`` and moved by Gaussian
    noise of ``settings.noise_scale`` times its spread over the training rows (``backbone.feature_scale``)."""
    scale = backbone.feature_scale.to(row.dtype)
    views = [dropout_and_noise(row, generator, settings.drop_prob, settings.noise_scale, scale) for _ in range(count)]
    return [torch.stack(views)]
