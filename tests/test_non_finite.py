"""No silent wrong numbers: non-finite samples stay alone, huge values give true features, bad weights are refused."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import tiny_vit

from skfungi import AudioBackbone, FungiTransformer, ImageBackbone, TabularBackbone, TabularMLP, TimmBackbone
from skfungi._utils.numerics import l2_normalize
from skfungi.losses import DINOLoss, KLLoss, SimCLRLoss

# -- l2_normalize -------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1e-300, 1e-30, 1.0, 1e30, 1e200, 1e300])
def test_l2_normalize_is_the_unit_direction_at_any_magnitude(scale):
    x = torch.tensor([[3.0, -4.0, 0.0], [1.0, 2.0, 2.0]], dtype=torch.float64)
    expected = x / x.norm(dim=1, keepdim=True)
    torch.testing.assert_close(l2_normalize(x * scale), expected, rtol=1e-15, atol=0)


def test_l2_normalize_keeps_zero_rows_and_marks_non_finite_rows():
    x = torch.tensor([[0.0, 0.0], [np.inf, 1.0], [np.nan, 1.0], [1.0, 1.0]])
    out = l2_normalize(x)
    assert torch.equal(out[0], torch.zeros(2)) and not torch.isfinite(out[1:3]).all(dim=1).any()
    torch.testing.assert_close(out[3], torch.full((2,), 2**-0.5))


def test_l2_normalize_has_the_derivative_of_plain_normalisation():
    x = torch.tensor([[1e3, -2e3, 0.5e3]], dtype=torch.float64, requires_grad=True)
    weights = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64)
    (robust,) = torch.autograd.grad((l2_normalize(x) * weights).sum(), x)
    (plain,) = torch.autograd.grad((x / x.norm() * weights).sum(), x)
    torch.testing.assert_close(robust, plain, rtol=1e-12, atol=0)


# -- one non-finite sample in a batch -------------------------------------------------------------


class LogFirstPixel(nn.Module):
    """A CNN whose embedding adds log(first pixel): -inf for an image whose first pixel is 0."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 4, stride=4)
        self.pointwise = nn.Conv2d(6, 8, 1)

    def forward(self, x):
        return self.pointwise(torch.relu(self.stem(x))).mean(dim=(2, 3)) + torch.log(x[:, :1, 0, 0])


def non_finite_fungi(**params):
    torch.manual_seed(0)
    backbone = ImageBackbone(LogFirstPixel(), layer="pointwise", input_size=16, preprocess=_identity)
    losses = (KLLoss(), DINOLoss(n_local_crops=2, latent_dim=16))
    return FungiTransformer(backbone, losses=losses, random_state=0, batch_size=6, **params)


def _identity(views):
    return views


@pytest.fixture
def images_with_a_bad_one():
    images = np.random.default_rng(0).integers(1, 256, (6, 16, 16, 3), dtype=np.uint8)
    bad = images.copy()
    bad[3, 0, 0, 0] = 0  # log(0) = -inf for sample 3's inference view (DINO's crops are all finite)
    return images, bad


def test_a_non_finite_sample_is_refused_by_index(images_with_a_bad_one):
    images, bad = images_with_a_bad_one
    fungi = non_finite_fungi().fit(images)
    with pytest.raises(ValueError, match=r"embedding, kl block\(s\) of sample\(s\) 3 are not finite"):
        fungi.transform(bad)


def test_a_non_finite_sample_never_touches_the_other_rows(images_with_a_bad_one):
    images, bad = images_with_a_bad_one
    fungi = non_finite_fungi(on_non_finite="nan").fit(images)
    with pytest.warns(RuntimeWarning, match=r"sample\(s\) 3 are not finite.*rows are NaN"):
        together = fungi.transform(bad)
    assert np.isnan(together[3]).all() and np.isfinite(np.delete(together, 3, axis=0)).all()
    alone = np.concatenate([fungi.transform(bad[[index]]) for index in (0, 1, 2, 4, 5)])
    np.testing.assert_allclose(np.delete(together, 3, axis=0), alone, atol=1e-5)


def test_non_finite_weights_are_refused_at_fit(images):
    model = tiny_vit()
    with torch.no_grad():
        model.blocks[1].mlp.fc1.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"parameter 'blocks\.1\.mlp\.fc1\.weight' contains NaN or infinite"):
        FungiTransformer(TimmBackbone(model), losses=("kl",)).fit(images)


def test_a_backbone_on_the_meta_device_is_refused(images):
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match=r"parameter '0\.weight' is on the meta device"):
        FungiTransformer(ImageBackbone(model, layer="0"), losses=("kl",), device="cpu").fit(images)


@pytest.mark.parametrize(
    ("backbone", "X"),
    [
        (ImageBackbone(nn.Conv2d(3, 4, 1), layer=""), torch.empty(2, 3, 8, 8, device="meta")),
        (TabularMLP(), torch.empty(4, 3, device="meta")),
        (AudioBackbone(nn.Sequential(nn.Linear(128, 4)), layer="0"), [torch.empty(800, device="meta")]),
    ],
    ids=["image", "tabular", "audio"],
)
def test_inputs_on_the_meta_device_are_refused(backbone, X):
    with pytest.raises(ValueError, match="is a tensor on the meta device"):
        FungiTransformer(backbone, losses=("kl",)).fit(X)


# -- huge but finite values -------------------------------------------------------------------------


def homogeneous_mlp(dtype) -> nn.Module:
    """A bias-free ReLU MLP: f(c x) = c f(x), so FUNGI's KL features of c x are those of x."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16, bias=False), nn.ReLU(), nn.Linear(16, 8, bias=False)).to(dtype)


@pytest.mark.parametrize(("dtype", "scale"), [(torch.float64, 1e156), (torch.float64, 1e-150), (torch.float32, 1e20)])
def test_huge_or_tiny_rows_give_the_features_of_the_same_direction(dtype, scale):
    rows = np.random.default_rng(0).normal(size=(12, 5))
    fungi = FungiTransformer(TabularBackbone(homogeneous_mlp(dtype)), losses=("kl",), random_state=0).fit(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no zero block, no overflow warning
        scaled = fungi.transform(rows * scale)
    np.testing.assert_allclose(scaled, fungi.transform(rows), atol=2e-5 if dtype == torch.float32 else 1e-6)


def test_statistics_of_rows_near_the_float64_limit_do_not_overflow():
    rows = np.random.default_rng(0).normal(size=(30, 5))
    plain = FungiTransformer(TabularMLP(), losses=("kl",), random_state=0).fit(rows)
    huge = FungiTransformer(TabularMLP(), losses=("kl",), random_state=0).fit(rows * 1e300)
    np.testing.assert_allclose(huge.backbone_.feature_scale.numpy() / 1e300, plain.backbone_.feature_scale.numpy())
    np.testing.assert_allclose(huge.transform(rows * 1e300), plain.transform(rows), atol=1e-6)


def test_an_exactly_zero_block_is_reported_by_sample():
    class ZeroForOddRows(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 4)

        def forward(self, x):
            return self.linear(x) * (x[:, :1] > 0)  # rows whose first feature is not positive embed to 0

    rows = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 1.0], [2.0, 1.0, 0.0], [0.5, 0.5, 0.5]])
    fungi = FungiTransformer(TabularBackbone(ZeroForOddRows()), losses=("kl",), random_state=0).fit(rows[[0, 2, 3]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fungi.transform(rows)
    messages = [str(warning.message) for warning in caught]
    assert any(message.startswith("the embedding block of sample(s) 1 is exactly zero") for message in messages)
    assert any(message.startswith("the kl block of sample(s) 1 is exactly zero") for message in messages)


def test_a_non_finite_training_sample_for_the_negative_bank_is_refused(images_with_a_bad_one):
    _, bad = images_with_a_bad_one
    fungi = non_finite_fungi().set_params(losses=(SimCLRLoss(grid_size=2, n_negatives=6),))
    with pytest.raises(ValueError, match=r"simclr's views of training sample\(s\) 3 are not finite"):
        fungi.fit(bad)  # the patch holding sample 3's first pixel embeds to -inf
