"""View presets: the documented views, batch invariance and determinism for each, ViTs at view sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import engine_gradients, reference_gradient, tiny_cnn, tiny_vit
from timm.models.mlp_mixer import MlpMixer
from timm.models.vision_transformer import VisionTransformer

from skfungi import FungiTransformer, ImageBackbone, TimmBackbone
from skfungi._utils.seeding import generator
from skfungi.backbones.open_clip import OpenCLIPImageBackbone
from skfungi.losses import VIEW_PRESETS, DINOLoss, SimCLRLoss, make_loss
from skfungi.views.image import dino_local_size, simclr_patch_size

pytestmark = pytest.mark.usefixtures("one_torch_thread")


PRESETS = sorted(VIEW_PRESETS)

# (preset, backbone kind) -> [(views, side)] per loss, for a 224-px input (docs/usage.md, "View presets")
DOCUMENTED_VIEWS_AT_224 = {
    ("paper", "flexible"): {"kl": [(1, 224)], "dino": [(12, 224)], "simclr": [(49, 224)]},
    ("fast", "flexible"): {"kl": [(1, 224)], "dino": [(2, 224), (10, 96)], "simclr": [(16, 112)]},
    ("paper", "fixed"): {"kl": [(1, 224)], "dino": [(12, 224)], "simclr": [(49, 224)]},
    ("fast", "fixed"): {"kl": [(1, 224)], "dino": [(12, 224)], "simclr": [(16, 224)]},
}


def view_shapes(loss, backbone, image) -> list[tuple[int, int]]:
    groups = loss.views(image, backbone, generator(0))
    shapes = []
    for group in groups:
        group = torch.stack(group) if isinstance(group, list) else group
        assert group.shape[-1] == group.shape[-2]
        shapes.append((group.shape[0], group.shape[-1]))
    return shapes


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("kind", ["flexible", "fixed"])
def test_presets_build_the_documented_number_and_size_of_views(preset, kind):
    backbone = ImageBackbone(tiny_cnn(), layer="pointwise", input_size=224, flexible_size=kind == "flexible")
    images = np.random.default_rng(0).integers(0, 256, size=(2, 240, 300, 3), dtype=np.uint8)
    fungi = FungiTransformer(backbone, views=preset, random_state=0).fit(images[:1])
    image = fungi.backbone_.canonical(fungi.backbone_.as_samples(images)[1], 1)
    expected = DOCUMENTED_VIEWS_AT_224[preset, kind]
    for loss in fungi.losses_:
        assert view_shapes(loss, fungi.backbone_, image) == expected[loss.name]
        assert loss.view_count(fungi.backbone_) == sum(count for count, _ in expected[loss.name])


def test_fast_preset_sides_follow_a_vits_patch_grid():
    backbone = TimmBackbone("vit_tiny_patch16_224", pretrained=False)
    image = torch.rand(3, 230, 250)
    dino, simclr = make_loss("dino", "fast"), make_loss("simclr", "fast")
    simclr._resolve("image")
    assert view_shapes(dino, backbone, image) == [(2, 224), (10, 96)]
    assert view_shapes(simclr, backbone, image) == [(16, 112)]
    assert [backbone.forward_size(size) for size in (1, 7, 100, 105, 120)] == [16, 16, 96, 112, 128]
    assert dino_local_size(DINOLoss(local_crop_size=50), backbone) == 48
    assert simclr_patch_size(SimCLRLoss(patch_fraction=0.3, resize_patches=False), backbone) == 64  # 67 px -> 4 patches


def test_preset_settings_are_loss_parameters_and_loss_objects_keep_theirs(vit_backbone, images):
    assert make_loss("dino", "fast").get_params() == DINOLoss(local_crop_size=0.43).get_params()
    assert make_loss("simclr", "fast").get_params() == SimCLRLoss(grid_size=4, resize_patches=False).get_params()
    assert make_loss("simclr", "paper").get_params() == SimCLRLoss().get_params()
    mine = SimCLRLoss(grid_size=2)
    assert make_loss(mine, "fast") is mine
    fungi = FungiTransformer(vit_backbone, losses=("dino", mine), views="fast", random_state=0).fit(images)
    assert fungi.losses_[0].local_crop_size == 0.43 and fungi.losses_[1].grid_size == 2


@pytest.mark.parametrize("views", ["quick", None, ["fast"]])
def test_unknown_preset_is_a_clear_error(vit_backbone, images, views):
    with pytest.raises(ValueError, match="'views' parameter of FungiTransformer must be a str among"):
        FungiTransformer(vit_backbone, views=views).fit(images)
    with pytest.raises(ValueError, match="'views' parameter of FungiTransformer must be a str among"):
        FungiTransformer(vit_backbone, losses=(), views=views).fit(images)


@pytest.mark.parametrize("bad", [0, -3, 0.0, 1.5, True, "96"])
def test_local_crop_size_is_validated(vit_backbone, images, bad):
    with pytest.raises(ValueError, match="local_crop_size"):
        FungiTransformer(vit_backbone, losses=(DINOLoss(local_crop_size=bad),), random_state=0).fit(images)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("backbone_fixture", ["vit_backbone", "cnn_backbone"])
def test_every_preset_is_batch_invariant_and_deterministic(preset, backbone_fixture, images, request):
    backbone = request.getfixturevalue(backbone_fixture)
    fungi = FungiTransformer(backbone, views=preset, batch_size=4, random_state=0).fit(images)
    features = fungi.transform(images)
    order = np.random.default_rng(1).permutation(len(images))
    np.testing.assert_allclose(fungi.transform(images[order]), features[order], atol=1e-5)
    for index in (0, 4):
        np.testing.assert_allclose(fungi.transform(images[index : index + 1])[0], features[index], atol=1e-5)
    again = FungiTransformer(backbone, views=preset, batch_size=3, random_state=0).fit(images)
    np.testing.assert_allclose(again.transform(images), features, atol=1e-5)
    other = FungiTransformer(backbone, views=preset, batch_size=4, random_state=1).fit(images)
    assert not np.allclose(other.transform(images), features, atol=1e-3)


def test_presets_change_the_gradient_blocks_only(vit_backbone, images):
    paper = FungiTransformer(vit_backbone, views="paper", random_state=0).fit_transform(images)
    fast = FungiTransformer(vit_backbone, views="fast", random_state=0).fit_transform(images)
    width = 12  # embedding and KL use the inference view in both presets
    np.testing.assert_allclose(fast[:, : 2 * width], paper[:, : 2 * width], atol=1e-6)
    assert not np.allclose(fast[:, 2 * width :], paper[:, 2 * width :], atol=1e-3)


def test_vit_at_view_sizes_matches_timms_dynamic_size_model_and_restores_its_flags():
    torch.manual_seed(0)
    fixed = VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=0)
    dynamic = VisionTransformer(
        img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=0, dynamic_img_size=True
    )
    dynamic.load_state_dict(fixed.state_dict())
    fixed.eval(), dynamic.eval()
    backbone = TimmBackbone(fixed)
    views = torch.rand(3, 3, 16, 16)
    flags = (fixed.dynamic_img_size, fixed.patch_embed.strict_img_size, fixed.patch_embed.flatten)
    with torch.no_grad():
        ours = backbone.embed(views)
        timms = dynamic.forward_head(dynamic.forward_features(backbone.prepare(views)), pre_logits=True)
        full = backbone.embed(torch.rand(2, 3, 32, 32))
    torch.testing.assert_close(ours, timms, rtol=0, atol=0)
    assert full.shape == (2, 16)
    assert (fixed.dynamic_img_size, fixed.patch_embed.strict_img_size, fixed.patch_embed.flatten) == flags
    with pytest.raises(AssertionError):  # the user's model still refuses other sizes outside skfungi
        fixed(torch.rand(1, 3, 16, 16))


@pytest.mark.parametrize(
    "loss",
    [DINOLoss(latent_dim=32, local_crop_size=0.43), SimCLRLoss(latent_dim=16, grid_size=3, resize_patches=False)],
)
def test_vit_gradients_at_interpolated_view_sizes_match_autograd(loss, images):
    backbone = TimmBackbone(tiny_vit(torch.float64))
    fungi = FungiTransformer(backbone, losses=(loss,), random_state=0).fit(images)
    fitted = fungi.losses_[0]
    batch = [fungi.backbone_.canonical(sample, i) for i, sample in enumerate(fungi.backbone_.as_samples(images[:3]))]
    assert {group.shape[-1] for group in fitted.views(batch[0], fungi.backbone_, generator(0))} != {16}
    engine = engine_gradients(fungi, fitted, batch)
    for index, image in enumerate(batch):
        torch.testing.assert_close(engine[index], reference_gradient(fungi, fitted, image), rtol=1e-9, atol=1e-12)


def test_fixed_size_backbones_forward_every_view_at_the_input_size():
    open_clip = pytest.importorskip("open_clip")
    clip = open_clip.model.CLIP(
        embed_dim=16,
        vision_cfg=dict(image_size=32, patch_size=8, width=32, layers=2, head_width=16),
        text_cfg=dict(context_length=16, width=32, heads=2, layers=2),
    )
    backbone = OpenCLIPImageBackbone(clip)
    assert not backbone.flexible_size and backbone.forward_size(12) == 32
    mixer = TimmBackbone(MlpMixer(img_size=32, patch_size=8, num_blocks=1, embed_dim=16, num_classes=0))
    assert mixer.patch_size is None and not mixer.flexible_size and mixer.forward_size(12) == mixer.input_size


def test_a_fixed_size_module_given_smaller_views_says_how_to_fix_it(images):
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=16, patch_size=8, embed_dim=12, depth=1, num_heads=2, num_classes=0)
    fungi = FungiTransformer(ImageBackbone(vit, layer="blocks.0.attn.proj", input_size=16), views="fast")
    with pytest.raises(RuntimeError, match="flexible_size=False"):
        fungi.fit(images)
    fixed = ImageBackbone(vit, layer="blocks.0.attn.proj", input_size=16, flexible_size=False)
    assert FungiTransformer(fixed, views="fast", random_state=0).fit_transform(images).shape == (6, 48)
