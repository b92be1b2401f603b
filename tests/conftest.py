"""Tiny, randomly initialised backbones and images shared by the tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer

from skfungi import ImageBackbone, TimmBackbone


def tiny_vit(dtype=torch.float32, seed=0) -> VisionTransformer:
    torch.manual_seed(seed)
    model = VisionTransformer(img_size=16, patch_size=8, embed_dim=12, depth=2, num_heads=2, num_classes=0)
    return model.to(dtype)


class TinyCNN(nn.Module):
    """3x3 stem, a 1x1 conv (the target), BatchNorm, global average pooling."""

    def __init__(self, bias: bool = True):
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.pointwise = nn.Conv2d(6, 10, 1, bias=bias)
        self.norm = nn.BatchNorm2d(10)
        with torch.no_grad():  # non-trivial running statistics
            self.norm.running_mean.uniform_(-0.5, 0.5)
            self.norm.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.norm(self.pointwise(x)))
        return x.mean(dim=(2, 3))


def tiny_cnn(dtype=torch.float32, bias=True, seed=0) -> TinyCNN:
    torch.manual_seed(seed)
    return TinyCNN(bias=bias).to(dtype)


@pytest.fixture
def vit_backbone():
    return TimmBackbone(tiny_vit())


@pytest.fixture
def cnn_backbone():
    return ImageBackbone(tiny_cnn(), layer="pointwise", input_size=12)


@pytest.fixture
def images():
    """Six uint8 RGB images, (N, H, W, C)."""
    return np.random.default_rng(0).integers(0, 256, size=(6, 20, 20, 3), dtype=np.uint8)
