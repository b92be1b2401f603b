"""Bad input: a clear error naming the offending sample or parameter, nothing coerced."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from conftest import tiny_cnn, tiny_vit
from PIL import Image
from sklearn.exceptions import NotFittedError

from skfungi import FungiTransformer, ImageBackbone, TimmBackbone
from skfungi.inputs.images import as_images
from skfungi.views.image import center_view, exact_8bit


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


def test_texts_given_to_an_image_transformer_are_named_as_texts_not_only_as_missing_files(fitted):
    with pytest.raises(ValueError, match=r"'a cat' \(sample 0\).*no such file.*image file's path: texts need a text"):
        fitted.transform(["a cat", "a dog"])


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


# -- images deeper than 8 bits: scaled by their depth, or refused with how to convert ---------------

RAMP8 = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (20, 1))  # a (20, 32) grey ramp, 0 to 248
DEEP_RAMP = np.tile(np.arange(0, 65536, 2048, dtype=np.uint16), (20, 1)) + 1000  # no value a multiple of 257


def png16(path, pixels: np.ndarray) -> None:
    """A 16-bit PNG of ``(H, W)`` or ``(H, W, C)`` uint16 pixels, written by hand (PIL writes 16-bit grey only)."""
    pixels = pixels if pixels.ndim == 3 else pixels[..., None]
    height, width, channels = pixels.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )


def sixteen_bit_forms(tmp_path, pixels: np.ndarray) -> dict:
    """The same 16-bit grey picture as PIL images, PNG and TIFF files, arrays (both byte orders), a tensor."""
    Image.fromarray(pixels).save(tmp_path / "grey16.tif")
    png16(tmp_path / "grey16.png", pixels)
    older_pillows_png = Image.fromarray(pixels.astype(np.int32))  # Pillow before 10.3 opens a 16-bit PNG in mode "I"
    older_pillows_png.format = "PNG"
    return {
        "PNG opened by an older Pillow": older_pillows_png,
        "PIL I;16": Image.fromarray(pixels),
        "PIL I;16B": Image.frombytes("I;16B", pixels.shape[::-1], pixels.astype(">u2").tobytes()),
        "16-bit PNG": tmp_path / "grey16.png",
        "16-bit TIFF": str(tmp_path / "grey16.tif"),
        "uint16 array": pixels,
        "big-endian uint16 array": pixels.astype(">u2"),
        "uint16 tensor": torch.from_numpy(pixels.astype(np.int32)).to(torch.uint16),
    }


def test_sixteen_bit_images_are_scaled_by_65535_in_every_form(tmp_path):
    expected = torch.from_numpy(DEEP_RAMP.astype(np.float32) / np.float32(65535))[None]
    for form, image in sixteen_bit_forms(tmp_path, DEEP_RAMP).items():
        decoded = as_images([image])[0]
        assert decoded.dtype == torch.float32, form
        torch.testing.assert_close(decoded, expected, rtol=0, atol=0, msg=form)
    stacked = as_images(np.stack([DEEP_RAMP, DEEP_RAMP[::-1]]))  # a whole (N, H, W) uint16 array
    torch.testing.assert_close(stacked[0], expected, rtol=0, atol=0)


def test_a_sixteen_bit_picture_gives_the_features_of_the_same_picture_in_eight_bits(tmp_path):
    fungi = FungiTransformer(TimmBackbone(tiny_vit()), losses=("kl",), random_state=0).fit([RAMP8, RAMP8[::-1]])
    eight_bit = fungi.transform([RAMP8])
    for form, image in sixteen_bit_forms(tmp_path, RAMP8.astype(np.uint16) * 257).items():
        np.testing.assert_array_equal(fungi.transform([image]), eight_bit, err_msg=form)  # the same values exactly
    deeper = fungi.transform([Image.fromarray(DEEP_RAMP)])
    from_floats = fungi.transform([DEEP_RAMP.astype(np.float64) / 65535])
    np.testing.assert_allclose(deeper, from_floats, atol=1e-6)


def test_deeper_images_are_resampled_in_floating_point_not_rounded_to_eight_bits():
    backbone = TimmBackbone(tiny_vit())
    decoded = as_images([DEEP_RAMP])[0]
    assert exact_8bit(decoded) is decoded  # not turned into an 8-bit PIL image
    size, interpolation, crop_pct = backbone.input_size, backbone.interpolation, backbone.crop_pct
    expected = center_view(decoded, size, interpolation, crop_pct, backbone.resize_mode)
    torch.testing.assert_close(backbone.inference_view(decoded), expected, rtol=0, atol=0)
    assert not torch.equal(expected, torch.round(expected * 255) / 255)  # finer than 8 bits


def test_float_pil_images_and_float_tiffs_in_the_unit_range_are_taken_as_they_are(tmp_path):
    values = DEEP_RAMP.astype(np.float32) / 65535
    Image.fromarray(values).save(tmp_path / "float.tif")
    for image in (Image.fromarray(values), tmp_path / "float.tif"):
        torch.testing.assert_close(as_images([image])[0], torch.from_numpy(values)[None], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (np.float16, lambda x: x.astype(np.float16).astype(np.float32)),
        (np.float64, lambda x: x.astype(np.float32)),
        (bool, lambda x: (x > 0.5).astype(np.float32)),
    ],
    ids=["float16", "float64", "bool"],
)
def test_half_double_and_boolean_images(dtype, expected):
    values = RAMP8.astype(np.float64) / 255
    array = values > 0.5 if dtype is bool else values.astype(dtype)
    for form in (array, torch.from_numpy(array), array[None], torch.from_numpy(array)[None]):
        decoded = as_images(form if form.ndim == 3 else [form])[0]
        torch.testing.assert_close(decoded, torch.from_numpy(expected(values))[None], rtol=0, atol=0)


def test_bilevel_pil_images_are_black_and_white():
    black_and_white = RAMP8 > 128
    bilevel = Image.fromarray(black_and_white)
    assert bilevel.mode == "1"
    torch.testing.assert_close(as_images([bilevel])[0], torch.from_numpy(black_and_white.astype(np.float32))[None])


def test_sixteen_bit_rgb_pngs_are_read_by_pil_at_eight_bits_never_clipped(tmp_path):
    colour = np.stack([DEEP_RAMP, DEEP_RAMP[:, ::-1], np.full_like(DEEP_RAMP, 40000)], axis=-1)
    png16(tmp_path / "rgb16.png", colour)
    png16(tmp_path / "rgba16.png", np.concatenate([colour, np.full_like(DEEP_RAMP, 30000)[..., None]], axis=-1))
    top_byte = torch.from_numpy((colour >> 8).astype(np.float32) / np.float32(255)).permute(2, 0, 1)
    for path in (tmp_path / "rgb16.png", tmp_path / "rgba16.png"):  # Pillow keeps each value's top byte
        torch.testing.assert_close(as_images([path])[0], top_byte, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda path: Image.fromarray(RAMP8.astype(np.int32)), TypeError, r"sample 0 has mode 'I' \(32-bit"),
        (lambda path: path, TypeError, r"image file '.*int32.tif' \(sample 0\) has mode 'I'.*astype\(np.uint16\)"),
        (lambda path: RAMP8.astype(np.int32), TypeError, r"sample 0 has dtype int32, .*x / 65535"),
        (lambda path: RAMP8.astype(np.int16), TypeError, r"sample 0 has dtype int16, "),
        (lambda path: RAMP8.astype(np.uint32), TypeError, r"sample 0 has dtype uint32, "),
        (lambda path: torch.from_numpy(RAMP8.astype(np.int32)), TypeError, r"sample 0 has dtype int32, "),
        (lambda path: np.zeros((8, 8), np.complex64), TypeError, r"sample 0 has dtype complex64; images must be"),
        (
            lambda path: Image.fromarray(RAMP8.astype(np.float32)),
            ValueError,
            r"sample 0 has float values outside \[0, 1\].*x / 255 for 8-bit values, x / 65535 for 16-bit",
        ),
    ],
    ids=["PIL mode I", "int32 TIFF", "int32 array", "int16 array", "uint32 array", "int32 tensor", "complex", "PIL F"],
)
def test_images_whose_range_is_ambiguous_are_refused_with_how_to_convert(tmp_path, make, error, message):
    Image.fromarray(RAMP8.astype(np.int32)).save(tmp_path / "int32.tif")
    with pytest.raises(error, match=message):
        as_images([make(tmp_path / "int32.tif")])[0]


def test_whole_arrays_of_an_ambiguous_dtype_are_refused_before_decoding():
    with pytest.raises(TypeError, match=r"X has dtype int32, .*x / 65535"):
        as_images(np.zeros((2, 8, 8, 3), np.int32))
    with pytest.raises(ValueError, match=r"X has float values outside \[0, 1\] \(first at sample 1\)"):
        as_images(torch.stack([torch.zeros(3, 8, 8), torch.full((3, 8, 8), 255.0)]))
