"""Tabular views: feature dropout and Gaussian noise."""

from __future__ import annotations

import torch

__all__ = ["dropout_and_noise"]


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
