"""Common CNNs as backbones: timm ResNet-18 and ResNet-50 at their default target layer (a 3x3 and a
1x1 convolution), with every loss and view block, and the embedding alone with no target layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import engine_gradients, reference_gradient

from skfungi import FungiTransformer, ImageBackbone, TimmBackbone
from skfungi.losses import DINOLoss, KLLoss, SimCLRLoss, ViewAverage

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = 32  # px: the views' side, so that a ResNet-50 forward costs ~85 MFLOPs here
LOSSES = (KLLoss(), DINOLoss(latent_dim=32, n_local_crops=2), SimCLRLoss(grid_size=2, latent_dim=16, n_negatives=2))
DEFAULT_LAYERS = {"resnet18": "layer4.1.conv2", "resnet50": "layer4.2.conv3"}


def resnet(name: str, dtype=torch.float32) -> TimmBackbone:
    """Random weights, asked for; timm starts each block's last BatchNorm at zero (so that a block
    starts as the identity), which would zero the gradient of the convolution before it: those
    norms get random scales and statistics, as trained ones have."""
    torch.manual_seed(0)
    backbone = TimmBackbone(name, pretrained=False, data_config={"input_size": (3, SMALL, SMALL)})
    with torch.no_grad():
        for module in backbone.module.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    backbone.module.to(dtype)
    return backbone


@pytest.fixture(scope="module")
def photos():
    return np.random.default_rng(0).integers(0, 256, size=(3, 40, 36, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", list(DEFAULT_LAYERS))
def test_resnets_default_to_the_last_convolution_of_their_last_stage(name):
    backbone = resnet(name)
    assert backbone.default_layer == DEFAULT_LAYERS[name]
    kernel = backbone.module.get_submodule(DEFAULT_LAYERS[name]).kernel_size
    assert kernel == {"resnet18": (3, 3), "resnet50": (1, 1)}[name]


@pytest.mark.parametrize("name", list(DEFAULT_LAYERS))
def test_resnets_give_every_loss_and_view_block(name, photos):
    blocks = (*LOSSES, ViewAverage(LOSSES[1]), ViewAverage(LOSSES[2]))
    fungi = FungiTransformer(resnet(name), losses=blocks, random_state=0, batch_size=8).fit(photos)
    features = fungi.transform(photos)
    width = fungi.embedding_dim_
    assert fungi.layer_ == DEFAULT_LAYERS[name] and features.shape == (3, 6 * width)
    assert np.isfinite(features).all()
    norms = np.linalg.norm(features.reshape(3, 6, width), axis=2)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    np.testing.assert_allclose(fungi.transform(photos[1:2]), features[1:2], atol=1e-5)  # batch invariance


@pytest.mark.parametrize("name", list(DEFAULT_LAYERS))
@pytest.mark.parametrize("loss", LOSSES, ids=lambda loss: loss.name)
def test_resnet_gradients_at_the_default_layer_match_autograd_loop(name, loss, photos):
    fungi = FungiTransformer(resnet(name, torch.float64), losses=(loss,), random_state=1, batch_size=8).fit(photos)
    fitted = fungi.losses_[0]
    batch = [fungi.backbone_.canonical(torch.from_numpy(p).permute(2, 0, 1) / 255.0, i) for i, p in enumerate(photos)]
    fast = engine_gradients(fungi, fitted, batch)
    for index, image in enumerate(batch):
        slow = reference_gradient(fungi, fitted, image)
        assert slow.abs().max() > 0
        torch.testing.assert_close(fast[index], slow, rtol=1e-9, atol=1e-12)


def test_the_embedding_and_view_blocks_need_no_target_layer(photos):
    """A module with no layer FUNGI can take gradients from still gives its embedding and its views'
    controls; only a gradient block asks for a layer."""

    class Pooling(nn.Module):
        def forward(self, x):
            return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)

    backbone = ImageBackbone(Pooling(), input_size=16)
    for losses in [(), ("dino_views", "simclr_views")]:
        fungi = FungiTransformer(backbone, losses=losses, random_state=0).fit(photos)
        assert fungi.layer_ is None and fungi.transform(photos).shape == (3, 6 * (1 + len(losses)))
    with pytest.raises(ValueError, match=r"no default target layer; pass layer=\.\.\..*\(deepest candidates: none\)"):
        FungiTransformer(backbone, losses=("kl",), random_state=0).fit(photos)
