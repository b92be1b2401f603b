"""Bad input: a clear error naming the offending sample or parameter, nothing coerced."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_cnn, tiny_vit
from sklearn.exceptions import NotFittedError

from skfungi import FungiTransformer, ImageBackbone
from skfungi.inputs.images import as_images


@pytest.fixture
def fitted(vit_backbone, images):
    return FungiTransformer(vit_backbone, losses=("kl",), random_state=0).fit(images)


@pytest.mark.parametrize(
    ("X", "error", "message"),
    [
        (np.zeros((0, 8, 8, 3), np.uint8), ValueError, "X is empty"),
        ([], ValueError, "X is empty"),
        (np.zeros((2, 8), np.float32), ValueError, "2-D .* tabular rows"),
        (np.zeros((2, 8, 8, 3, 1), np.uint8), ValueError, "got shape"),
        (np.zeros((2, 8, 8, 4), np.uint8), ValueError, "4 channels"),
        (torch.zeros(2, 2, 8, 8), ValueError, "2 channels"),
        (np.zeros((2, 8, 8, 3), np.int64), TypeError, "dtype int64"),
        (np.full((2, 8, 8, 3), 2.0, np.float32), ValueError, r"outside \[0, 1\] \(first at sample 0\)"),
        ("image.png", TypeError, "not a single path"),
        ({"a": 1}, TypeError, "got dict"),
    ],
)
def test_bad_collections_are_refused(X, error, message):
    with pytest.raises(error, match=message):
        as_images(X)


def test_nan_and_inf_name_the_sample():
    X = np.zeros((4, 8, 8, 3), np.float32)
    X[2, 1, 1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values \\(first at sample 2\\)"):
        as_images(X)
    listed = [np.zeros((8, 8, 3), np.float32), np.full((8, 8, 3), np.inf, np.float32)]
    with pytest.raises(ValueError, match="sample 1 contains NaN or infinite"):
        as_images(listed)[1]


def test_unreadable_and_missing_files_name_the_file_and_index(fitted, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    good = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"cannot read image file '.*broken.png' \(sample 1\)"):
        fitted.transform([good, broken])
    with pytest.raises(ValueError, match=r"cannot read image file '.*missing.png' \(sample 2\)"):
        fitted.transform([good, good, str(tmp_path / "missing.png")])


def test_bad_list_elements_name_the_sample(fitted):
    with pytest.raises(TypeError, match="sample 1 is a int"):
        fitted.transform([np.zeros((8, 8, 3), np.uint8), 3])
    with pytest.raises(ValueError, match="sample 0 has shape \\(5, 8, 8\\)"):
        fitted.transform([np.zeros((8, 8, 5), np.uint8)])


def test_transform_before_fit(vit_backbone, images):
    with pytest.raises(NotFittedError):
        FungiTransformer(vit_backbone).transform(images)


def test_different_input_kind_at_transform(fitted):
    with pytest.raises(ValueError, match="tabular rows"):
        fitted.transform(np.zeros((3, 5), np.float32))


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        ({"losses": ("kl", "mae")}, ValueError, "unknown loss 'mae'"),
        ({"losses": ("kl", "kl")}, ValueError, "more than one \\['kl'\\]"),
        ({"losses": 3}, TypeError, "'losses' parameter of FungiTransformer must be"),
        ({"losses": (), "include_embedding": False}, ValueError, "no features"),
        (
            {"batch_size": 0},
            ValueError,
            r"'batch_size' parameter of FungiTransformer must be an int in the range \[1, inf\)",
        ),
        ({"projection_dim": -2}, ValueError, "projection_dim"),
        ({"projection": "sparse"}, ValueError, "'projection' parameter of FungiTransformer must be a str among"),
        ({"layer": "blocks.7.attn.proj"}, ValueError, "does not exist.*candidate layers"),
        ({"layer": "blocks.1.norm1"}, ValueError, "is a LayerNorm"),
        ({"random_state": "seven"}, ValueError, "random_state"),
    ],
)
def test_bad_parameters_are_reported_at_fit(params, error, message, images):
    with pytest.raises(error, match=message):
        FungiTransformer(tiny_vit(), **params).fit(images)


def test_module_without_default_layer_asks_for_one(images):
    with pytest.raises(ValueError, match=r"no default target layer.*pointwise"):
        FungiTransformer(tiny_cnn()).fit(images)


def test_bad_backbones():
    with pytest.raises(ValueError, match="backbone spec 'vit' is not understood"):
        FungiTransformer("vit").fit(np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(TypeError, match="'backbone' parameter of FungiTransformer must be an instance of"):
        FungiTransformer(42).fit(np.zeros((1, 8, 8, 3), np.uint8))


def test_embedding_must_be_two_dimensional(images):
    net = torch.nn.Conv2d(3, 4, 1)
    with pytest.raises(ValueError, match="embedding must be an \\(N, E\\) tensor"):
        FungiTransformer(ImageBackbone(net, layer="", input_size=8), losses=("kl",)).fit(images)


def test_rgb_image_into_a_grey_backbone_is_refused():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    backbone = ImageBackbone(net, layer="0", input_size=8, in_channels=1, mean=(0.5,), std=(0.5,))
    fungi = FungiTransformer(backbone, losses=("kl",), random_state=0).fit(np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="sample 0 has 3 channels; the backbone expects 1"):
        fungi.transform(np.zeros((1, 8, 8, 3), np.uint8))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"batch_size": 0}, r"'batch_size' parameter of FungiTransformer must be an int in the range \[1, inf\)"),
        ({"num_workers": -1}, "'num_workers' parameter"),
        ({"precision": "float8"}, "'precision' parameter"),
        ({"on_non_finite": "ignore"}, "'on_non_finite' parameter"),
    ],
)
def test_parameters_set_after_fit_are_checked_at_transform(params, message, images):
    fungi = FungiTransformer(tiny_vit(), losses=("kl",), random_state=0).fit(images)
    fungi.set_params(**params)
    with pytest.raises(ValueError, match=message):
        fungi.transform(images)


def test_a_projection_wider_than_the_gradient_is_refused(images):
    with pytest.raises(ValueError, match=r"projection_dim=200 exceeds the 156 entries of the gradient of layer"):
        FungiTransformer(tiny_vit(), losses=("kl",), projection_dim=200).fit(images)


def test_parameters_are_checked_before_the_backbone_is_built(monkeypatch, images):
    import skfungi._transformer

    built = []
    monkeypatch.setattr(skfungi._transformer, "resolve_backbone", lambda *args: built.append(args))
    for params in ({"batch_size": 0}, {"losses": ("kl", "mae")}):
        with pytest.raises(ValueError):
            FungiTransformer("timm:vit_tiny_patch16_224", **params).fit(images)
    assert built == []
