"""The inference view is the model library's own evaluation transform (timm's, open_clip's), to float precision."""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from timm.data import create_transform, resolve_data_config
from torchvision.transforms import InterpolationMode

from skfungi import FungiTransformer
from skfungi._utils.seeding import generator
from skfungi.backbones import ImageBackbone, TimmBackbone
from skfungi.backbones.open_clip import OpenCLIPImageBackbone
from skfungi.views.image import _crop_box, exact_8bit, patchify, random_resized_crop

# (width, height): odd sides, wider and taller than the model's 32 px, one smaller than the crop
SIZES = [(45, 37), (33, 61), (101, 77), (37, 35), (23, 53)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def photos(seed: int = 0) -> list[Image.Image]:
    """Smooth RGB images (random noise upsampled) at odd sizes: what a camera gives, not worst-case noise."""
    rng = np.random.default_rng(seed)
    coarse = [Image.fromarray(rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)) for _ in SIZES]
    return [image.resize(size, Image.BILINEAR) for image, size in zip(coarse, SIZES, strict=True)]


def float_images(seed: int = 0) -> list[torch.Tensor]:
    """Float images whose values are not 8-bit codes (resampled in floating point)."""
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(rng.random((3, height, width), dtype=np.float32)) for width, height in SIZES]


def embedding_block(backbone, images) -> np.ndarray:
    return FungiTransformer(backbone, losses=(), random_state=0).fit_transform(images)


def normalised(embeddings: torch.Tensor) -> np.ndarray:
    return F.normalize(embeddings, dim=1).detach().numpy()


@pytest.fixture(scope="module")
def timm_vit():
    """A timm ViT whose pretrained config says bicubic, crop_pct 0.9, mean/std 0.5 (at 32 px)."""
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224.augreg_in21k_ft_in1k",
        pretrained=False,
        num_classes=0,
        img_size=32,
        depth=2,
        pretrained_cfg_overlay={"input_size": (3, 32, 32)},
    )
    return model.eval()


def test_timm_inference_view_is_timms_eval_transform(timm_vit):
    config = resolve_data_config(model=timm_vit)
    assert (config["interpolation"], config["crop_pct"], config["mean"]) == ("bicubic", 0.9, (0.5, 0.5, 0.5))
    transform = create_transform(**config)  # Resize(35, bicubic) -> CenterCrop(32) -> ToTensor -> Normalize
    backbone = TimmBackbone(timm_vit)
    for images in (photos(), float_images()):
        with torch.no_grad():
            expected = normalised(timm_vit(torch.stack([transform(image) for image in images])))
        np.testing.assert_allclose(embedding_block(backbone, images), expected, rtol=0, atol=1e-5)


def test_timm_settings_can_be_overridden(timm_vit):
    backbone = TimmBackbone(timm_vit, data_config={"interpolation": "bilinear", "crop_pct": 1.0, "mean": (0.1,)})
    assert (backbone.interpolation, backbone.crop_pct, backbone.mean) == ("bilinear", 1.0, (0.1, 0.1, 0.1))
    transform = create_transform(**resolve_data_config({"interpolation": "bilinear", "crop_pct": 1.0}, model=timm_vit))
    view = backbone.inference_view(TF.pil_to_tensor(photos()[0]) / 255.0)
    torch.testing.assert_close(
        view, TF.pil_to_tensor(transform.transforms[1](transform.transforms[0](photos()[0]))) / 255.0
    )
    with pytest.raises(ValueError, match="crop_mode 'border' is not supported"):
        TimmBackbone(timm_vit, data_config={"crop_mode": "border"})


def test_open_clip_inference_view_is_open_clips_preprocess(tmp_path):
    (tmp_path / "skfungi-preprocess-clip.json").write_text(
        json.dumps(
            {
                "embed_dim": 16,
                "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16},
                "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
            }
        )
    )
    open_clip.add_model_config(tmp_path)
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("skfungi-preprocess-clip", pretrained=None)
    model.eval()
    backbone = OpenCLIPImageBackbone(model)
    assert (backbone.interpolation, backbone.resize_mode, backbone.crop_pct) == ("bicubic", "shortest", 1.0)
    for images in (photos(1), float_images(1)):
        with torch.no_grad():
            expected = normalised(model.encode_image(torch.stack([preprocess(image) for image in images])))
        np.testing.assert_allclose(embedding_block(backbone, images), expected, rtol=0, atol=1e-5)


def test_exact_8bit_finds_8bit_images_only():
    image = photos()[0]
    decoded = TF.pil_to_tensor(image).float() / 255.0  # as skfungi decodes a PIL image
    assert np.array_equal(np.asarray(exact_8bit(decoded)), np.asarray(image))
    shifted = decoded + 1e-4
    assert exact_8bit(shifted) is shifted
    grey = TF.pil_to_tensor(image.convert("L")).float() / 255.0
    assert exact_8bit(grey).mode == "L"


def test_loss_views_use_the_models_interpolation_as_torchvision_does():
    image = float_images()[2]
    box = _crop_box(77, 101, (0.05, 0.25), (3 / 4, 4 / 3), generator(3))
    expected = TF.resized_crop(image, *box, [32, 32], InterpolationMode.BICUBIC, antialias=True)
    crop = random_resized_crop(image, 32, (0.05, 0.25), generator(3), interpolation="bicubic")
    torch.testing.assert_close(crop, expected, rtol=0, atol=0)
    backbone = ImageBackbone(torch.nn.Identity(), input_size=32, interpolation="bicubic")
    patches = patchify(image, 32, grid=3, interpolation=backbone.interpolation)
    square = TF.center_crop(TF.resize(image, [32], InterpolationMode.BICUBIC, antialias=True), [32, 32])
    first = TF.resize(square[:, :16, :16], [32, 32], InterpolationMode.BICUBIC, antialias=True)
    torch.testing.assert_close(patches[0], first, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="interpolation must be one of"):
        ImageBackbone(torch.nn.Identity(), interpolation="lanczos")
