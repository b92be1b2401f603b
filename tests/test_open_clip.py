"""open_clip towers: true gradients of the functional attn.out_proj, names, weights files, glue."""

from __future__ import annotations

import json
import pickle

import numpy as np
import open_clip
import pytest
import torch
from conftest import engine_gradients, reference_gradient
from open_clip.model import CLIP

from skfungi import FungiTransformer
from skfungi.backbones import resolve_backbone
from skfungi.backbones.open_clip import OpenCLIPImageBackbone, OpenCLIPTextBackbone, open_clip_backbone
from skfungi.losses import DINOLoss, KLLoss, SimCLRLoss

VISION = {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16}
TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}
TINY_NAME = "skfungi-tiny-clip"
TEXTS = [
    "a photo of a cat",
    "a dog running on the beach",
    "",
    "the quick brown fox jumps over the lazy dog and keeps on running far away",
    "red car",
    "two birds on a wire",
]


def tiny_clip(dtype=torch.float32, seed=0) -> CLIP:
    torch.manual_seed(seed)
    return CLIP(embed_dim=16, vision_cfg=VISION, text_cfg=TEXT).to(dtype)


@pytest.fixture(scope="module")
def tokenizer():
    return open_clip.tokenizer.SimpleTokenizer(context_length=TEXT["context_length"])


@pytest.fixture(scope="module")
def tiny_name(tmp_path_factory):
    """The tiny config registered under a model name, as open_clip.add_model_config does for users."""
    folder = tmp_path_factory.mktemp("open_clip_configs")
    (folder / f"{TINY_NAME}.json").write_text(json.dumps({"embed_dim": 16, "vision_cfg": VISION, "text_cfg": TEXT}))
    open_clip.add_model_config(folder)
    return TINY_NAME


# -- the adapters ----------------------------------------------------------------------


def test_image_tower_defaults_follow_the_model():
    model = tiny_clip()
    backbone = open_clip_backbone(model)
    assert isinstance(backbone, OpenCLIPImageBackbone) and backbone.module is model
    assert backbone.default_layer == "visual.transformer.resblocks.1.attn.out_proj"
    assert backbone.input_size == 32
    assert backbone.mean == open_clip.OPENAI_DATASET_MEAN and backbone.std == open_clip.OPENAI_DATASET_STD
    assert (backbone.interpolation, backbone.crop_pct, backbone.resize_mode) == ("bicubic", 1.0, "shortest")
    model.visual.preprocess_cfg = {"size": 32, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    assert OpenCLIPImageBackbone(model).mean == (0.5, 0.5, 0.5)
    overridden = OpenCLIPImageBackbone(model, preprocess_cfg={"interpolation": "bilinear", "resize_mode": "squash"})
    assert (overridden.interpolation, overridden.resize_mode) == ("bilinear", "squash")
    with pytest.raises(ValueError, match="resize_mode 'longest' is not supported"):
        OpenCLIPImageBackbone(model, preprocess_cfg={"resize_mode": "longest"})


def test_text_tower_defaults_and_tokenizer(tokenizer):
    model = tiny_clip()
    backbone = open_clip_backbone(model, "text")
    assert isinstance(backbone, OpenCLIPTextBackbone) and backbone.module is model
    assert backbone.default_layer == "transformer.resblocks.1.attn.out_proj"
    assert backbone.context_length == 16
    assert torch.equal(backbone.tokenize(TEXTS), tokenizer(TEXTS))
    with pytest.raises(ValueError, match="pads to 77 tokens but the model's context length is 16"):
        OpenCLIPTextBackbone(model, tokenizer=open_clip.tokenizer.SimpleTokenizer())
    other_vocab = CLIP(embed_dim=16, vision_cfg=VISION, text_cfg={**TEXT, "vocab_size": 100})
    with pytest.raises(ValueError, match=r"cannot tell which tokenizer.*tokenizer=open_clip.get_tokenizer"):
        OpenCLIPTextBackbone(other_vocab)


def test_registry_picks_the_tower_from_the_modality(images):
    model = tiny_clip()
    image_fungi = FungiTransformer(model, losses=("kl",), random_state=0).fit(images)
    text_fungi = FungiTransformer(model, modality="text", losses=("kl",), random_state=0).fit(TEXTS)
    assert (image_fungi.modality_, text_fungi.modality_) == ("image", "text")
    assert image_fungi.backbone_.module is model and text_fungi.backbone_.module is model
    assert image_fungi.transform(images).shape == (len(images), 32)
    assert text_fungi.transform(TEXTS).shape == (len(TEXTS), 32)


def test_model_name_random_and_local_weights_file(tiny_name, tmp_path):
    backbone = open_clip_backbone(tiny_name, "text", pretrained=False)
    assert backbone.default_layer == "transformer.resblocks.1.attn.out_proj"
    assert backbone.tokenizer.context_length == 16  # open_clip.get_tokenizer(name), offline
    weights = tmp_path / "tiny.pt"
    torch.save(tiny_clip(seed=7).state_dict(), weights)
    loaded = OpenCLIPImageBackbone(tiny_name, pretrained=weights).module
    expected = tiny_clip(seed=7).state_dict()
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)
    with pytest.raises(ValueError, match=f"unknown pretrained tag 'openai' for open_clip model '{tiny_name}'"):
        OpenCLIPImageBackbone(f"{tiny_name}/openai")
    with pytest.raises(ValueError, match=f"open_clip model '{tiny_name}' needs a pretrained tag"):
        OpenCLIPImageBackbone(tiny_name)  # never random weights unless asked for
    with pytest.raises(ValueError, match="names its weights"):
        OpenCLIPImageBackbone("ViT-B-32/openai", pretrained=False)
    with pytest.raises(FileNotFoundError, match="open_clip weights file not found"):
        OpenCLIPImageBackbone(tiny_name, pretrained=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="unknown open_clip model"):
        OpenCLIPImageBackbone("no-such-clip")
    with pytest.raises(ValueError, match="pretrained applies to a model name"):
        OpenCLIPImageBackbone(tiny_clip(), pretrained=weights)
    with pytest.raises(TypeError, match="must be an open_clip model name or an open_clip model"):
        OpenCLIPImageBackbone(torch.nn.Linear(2, 2))
    with pytest.raises(
        ValueError, match="'open_clip' backbones serve image and text; modality='audio' is not possible"
    ):
        resolve_backbone(tiny_clip(), "audio")


def test_spec_string_resolves_both_towers(tiny_name, images):
    spec = f"open_clip:{tiny_name}?pretrained=false"
    text = FungiTransformer(spec, modality="text", losses=("kl", "simclr"), random_state=0)
    assert text.fit(TEXTS).transform(TEXTS).shape == (len(TEXTS), 48)
    losses = ("kl", DINOLoss(latent_dim=32, n_local_crops=2), SimCLRLoss(grid_size=2))
    image = FungiTransformer(spec, losses=losses, random_state=0).fit(images)
    features = image.transform(images)
    assert features.shape == (len(images), 64) and np.isfinite(features).all()
    assert image.layer_ == "visual.transformer.resblocks.1.attn.out_proj"


# -- true gradients of the functional attn.out_proj -------------------------------------------


IMAGE_LOSSES = [KLLoss(), DINOLoss(latent_dim=32, n_local_crops=2), SimCLRLoss(latent_dim=16, grid_size=2)]


@pytest.mark.parametrize(
    "layer", ["visual.transformer.resblocks.1.attn.out_proj", "visual.transformer.resblocks.0.attn.out_proj"]
)
@pytest.mark.parametrize("loss", IMAGE_LOSSES, ids=lambda loss: loss.name)
def test_image_tower_gradients_match_autograd_loop(layer, loss, images):
    fungi = FungiTransformer(
        OpenCLIPImageBackbone(tiny_clip(torch.float64)), losses=(loss,), layer=layer, random_state=0, batch_size=8
    ).fit(images)
    fitted = fungi.losses_[0]
    batch = [torch.from_numpy(image).permute(2, 0, 1) / 255.0 for image in images]
    fast = engine_gradients(fungi, fitted, batch)
    for index, image in enumerate(batch):
        slow = reference_gradient(fungi, fitted, image)
        assert slow.abs().max() > 0
        torch.testing.assert_close(fast[index], slow, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("layer", ["transformer.resblocks.1.attn.out_proj", "transformer.resblocks.0.attn.out_proj"])
@pytest.mark.parametrize("loss", [KLLoss(), SimCLRLoss(n_views=4, latent_dim=16)], ids=["kl", "simclr"])
def test_text_tower_gradients_match_autograd_loop(layer, loss):
    """The last block's out_proj only gets the end-of-text token's gradient; block 0 all tokens (causal mask)."""
    backbone = OpenCLIPTextBackbone(tiny_clip(torch.float64))
    fungi = FungiTransformer(backbone, losses=(loss,), layer=layer, random_state=0, batch_size=16).fit(TEXTS)
    fitted = fungi.losses_[0]
    fast = engine_gradients(fungi, fitted, TEXTS)
    for index, text in enumerate(TEXTS):
        slow = reference_gradient(fungi, fitted, text)
        assert slow.abs().max() > 0
        torch.testing.assert_close(fast[index], slow, rtol=1e-9, atol=1e-12)


# -- invariances and glue -----------------------------------------------------------------------


def test_text_features_do_not_depend_on_the_batch():
    fungi = FungiTransformer(
        OpenCLIPTextBackbone(tiny_clip()), losses=("kl", "simclr"), random_state=0, batch_size=24
    ).fit(TEXTS)
    order = np.random.default_rng(1).permutation(len(TEXTS))[:5]
    batch = fungi.transform([TEXTS[i] for i in order])
    for row, index in enumerate(order):
        np.testing.assert_allclose(batch[row], fungi.transform([TEXTS[index]])[0], atol=1e-5)


def test_pickle_round_trip_keeps_model_and_tokenizer(images):
    text = FungiTransformer(tiny_clip(), modality="text", losses=("kl", "simclr"), random_state=0).fit(TEXTS)
    restored = pickle.loads(pickle.dumps(text))
    np.testing.assert_array_equal(restored.transform(TEXTS), text.transform(TEXTS))
    image = FungiTransformer(tiny_clip(), losses=("kl",), random_state=0).fit(images)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(image)).transform(images), image.transform(images))


def test_texts_given_to_the_image_tower_and_images_to_the_text_tower(images):
    image = FungiTransformer(tiny_clip(), losses=("kl",), random_state=0).fit(images)
    with pytest.raises((TypeError, ValueError)):
        image.transform(TEXTS)
    text = FungiTransformer(tiny_clip(), modality="text", losses=("kl",), random_state=0).fit(TEXTS)
    with pytest.raises(ValueError, match=r"images\?.*takes texts"):
        text.transform(images)
