"""skfungi's gradients and features equal the reference library's (fungivision 0.0.2, the authors' companion code).

Both run the same timm ViT, target layer, random heads, temperatures and
views: fungivision's view transforms are replaced by the views skfungi built
(normalised as skfungi normalises them), its heads get skfungi's weights and
its projection matrix is given. Where the two libraries' defaults differ
(docs/pretrained.md, "Reference library"), the test sets skfungi to the
reference's setting: KL temperature and SimCLR's temperature on the positive
term only (``temperature_scope="positives"``). Per-sample gradients are
compared after L2 normalisation: every block is normalised, and the two
libraries scale their losses differently (fungivision averages over the
batch and multiplies by the number of views; skfungi sums per sample).
"""

from __future__ import annotations

import copy
from typing import ClassVar

import numpy as np
import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from skfungi import FungiTransformer, RademacherProjection
from skfungi._utils.seeding import generator
from skfungi.backbones import TimmBackbone
from skfungi.losses import DINOLoss, KLLoss, SimCLRLoss

fungivision = pytest.importorskip("fungivision", reason="fungivision (test-only reference library) is not installed")
from fungivision import FUNGIWrapper  # noqa: E402
from fungivision import wrapper as fungivision_wrapper  # noqa: E402
from fungivision.config import DINOConfig, KLConfig, SimCLRConfig  # noqa: E402

LAYER = "blocks.1.attn.proj"
WIDTH = 16
GRADIENT_DIM = WIDTH * (WIDTH + 1)  # d_out x (d_in + bias)
KL_TEMPERATURE = 15.0


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def reference_vit() -> VisionTransformer:
    """224 px (fungivision's SimCLR patches are 224 px whatever the model), 7 x 7 patches of 32 px, width 16.

    float64: near the uniform distribution (KL at temperature 15) the loss's gradient is a difference of
    nearly equal probabilities, which float32 resolves to about 1e-3 relative; both libraries run in float64.
    """
    torch.manual_seed(0)
    model = VisionTransformer(img_size=224, patch_size=32, embed_dim=WIDTH, depth=2, num_heads=2, num_classes=0)
    return model.double().eval()


class RecordedDINOLoss(DINOLoss):
    """skfungi's DINO loss, keeping each sample's crops so that the reference gets the same ones."""

    crops: ClassVar[dict] = {}

    def views(self, image, backbone, generator):
        groups = super().views(image, backbone, generator)
        RecordedDINOLoss.crops[key(image)] = torch.cat(groups)
        return groups


class IdentityProjection(RademacherProjection):
    """No projection: each gradient block is the flattened per-sample gradient, L2-normalised."""

    def project(self, gradients: torch.Tensor) -> torch.Tensor:
        return gradients.to(torch.float64)


def key(image: torch.Tensor) -> bytes:
    return image.numpy().tobytes()


def normalise_views(backbone, views: torch.Tensor) -> torch.Tensor:
    """What skfungi's adapter gives the model: the same arithmetic, so the reference sees the same pixels."""
    return backbone.prepare(views)


def reference_features(fungi, images, train, matrix) -> np.ndarray:
    """fungivision's FUNGIWrapper on skfungi's views, heads and projection matrix: [kl | dino | simclr]."""
    backbone = fungi.backbone_
    kl, dino, simclr = fungi.losses_
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fungivision_wrapper, "generate_projection_matrix", lambda dims, device: matrix.clone())
        wrapper = FUNGIWrapper(
            model=copy.deepcopy(backbone.module).float(),  # it probes the model with a float32 image
            target_layer=LAYER,
            device=torch.device("cpu"),
            input_dim=224,
            extractor_configs=[
                KLConfig(temperature=KL_TEMPERATURE, latent_dim=kl.latent_dim),
                DINOConfig(latent_dim=dino.latent_dim),
                SimCLRConfig(latent_dim=simclr.latent_dim_, comparison_batch_size=len(train)),
            ],
        )
    kl_extractor, dino_extractor, simclr_extractor = wrapper.extractors
    wrapper.model.double()  # in place: the extractors share it, hooks and frozen flags stay
    for extractor in wrapper.extractors:
        extractor.projection_head.double()
        extractor.projection = extractor.projection.double()
    dino_extractor.teacher_projection.double()
    for extractor, head in (
        (kl_extractor, kl.head_),
        (dino_extractor, dino.student_head_),
        (simclr_extractor, simclr.head_),
    ):
        extractor.projection_head.weight.data.copy_(head[0])
        extractor.projection_head.bias.data.copy_(head[1])
    dino_extractor.teacher_projection.weight.data.copy_(dino.teacher_head_[0])
    dino_extractor.teacher_projection.bias.data.copy_(dino.teacher_head_[1])
    kl_extractor.transform = lambda image: normalise_views(backbone, backbone.inference_view(image)[None])[0]
    dino_extractor.transform = lambda image: normalise_views(backbone, RecordedDINOLoss.crops[key(image)])
    patches = lambda image: torch.cat(simclr.views(image, backbone, generator(0)))  # noqa: E731 (deterministic)
    simclr_extractor.transform = lambda image: normalise_views(backbone, patches(image))
    wrapper.setup([(image, 0) for image in train])  # the negative bank: every training image's 49 patches
    return wrapper(images).detach().numpy()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(3, 40, 52, 3), dtype=np.uint8)
    test = rng.integers(0, 256, size=(2, 45, 37, 3), dtype=np.uint8)
    return train, test


def fitted(projection, data):
    train, _ = data
    losses = (
        KLLoss(temperature=KL_TEMPERATURE),
        RecordedDINOLoss(),
        SimCLRLoss(n_negatives=len(train), temperature_scope="positives"),
    )
    fungi = FungiTransformer(TimmBackbone(reference_vit()), losses=losses, projection=projection, random_state=0)
    if isinstance(projection, IdentityProjection):
        fungi.set_params(projection_dim=GRADIENT_DIM)
    return fungi.fit(train)


def canonical(fungi, images) -> list[torch.Tensor]:
    backbone = fungi.backbone_
    return [backbone.canonical(sample, index) for index, sample in enumerate(backbone.as_samples(images))]


def test_per_sample_gradients_equal_the_references_for_kl_dino_and_simclr(data):
    fungi = fitted(IdentityProjection(), data)
    train, test = data
    features = fungi.transform(test)
    reference = reference_features(fungi, canonical(fungi, test), canonical(fungi, train), torch.eye(GRADIENT_DIM))
    ours = features[:, WIDTH:].reshape(len(test), 3, GRADIENT_DIM)
    theirs = reference.reshape(len(test), 3, GRADIENT_DIM)
    for index, name in enumerate(("kl", "dino", "simclr")):
        np.testing.assert_allclose(ours[:, index], theirs[:, index], rtol=0, atol=1e-5, err_msg=name)


def test_projected_features_equal_the_references_with_the_same_matrix(data):
    fungi = fitted("rademacher", data)
    train, test = data
    signs = torch.sign(fungi.projection_.matrix())  # the reference scales by 1/sqrt(D) itself
    reference = reference_features(fungi, canonical(fungi, test), canonical(fungi, train), signs)
    np.testing.assert_allclose(fungi.transform(test)[:, WIDTH:], reference, rtol=0, atol=1e-5)


def test_the_reference_cannot_take_the_functional_multihead_attention_projection():
    """Its hooks on an nn.MultiheadAttention's out_proj never fire (the layer is applied functionally)."""
    open_clip = pytest.importorskip("open_clip")
    torch.manual_seed(0)
    visual = open_clip.model.CLIP(
        embed_dim=16,
        vision_cfg={"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16},
        text_cfg={"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    ).visual
    wrapper = FUNGIWrapper(
        model=visual,
        target_layer="transformer.resblocks.1.attn.out_proj",
        device=torch.device("cpu"),
        input_dim=32,
        extractor_configs=[KLConfig()],
    )
    image = torch.rand(3, 40, 40)
    with pytest.raises(AssertionError, match="No activations detected"):
        wrapper([image])
