"""FungiTransformer as a scikit-learn estimator: invariances, glue, inputs, errors."""

from __future__ import annotations

import pickle

import joblib
import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import tiny_vit
from PIL import Image
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from skfungi import DINOLoss, FungiTransformer, ImageBackbone, KLLoss, SimCLRLoss, TimmBackbone

SMALL_LOSSES = ("kl", DINOLoss(latent_dim=64), SimCLRLoss(grid_size=3, latent_dim=32))


def make_fungi(backbone, **params):
    params = {"losses": SMALL_LOSSES, "random_state": 0, "batch_size": 4, **params}
    return FungiTransformer(backbone, **params)


@pytest.mark.parametrize("backbone_fixture", ["vit_backbone", "cnn_backbone"])
def test_a_sample_alone_equals_the_same_sample_inside_a_shuffled_batch(backbone_fixture, images, request):
    fungi = make_fungi(request.getfixturevalue(backbone_fixture), batch_size=5).fit(images)
    batch = fungi.transform(images[[4, 1, 0, 3, 2]])
    for position, index in enumerate([4, 1, 0, 3, 2]):
        alone = fungi.transform(images[index : index + 1])
        np.testing.assert_allclose(alone[0], batch[position], atol=1e-5)
    other_batch_size = clone(fungi).set_params(batch_size=2).fit(images).transform(images[[4, 1, 0, 3, 2]])
    np.testing.assert_allclose(other_batch_size, batch, atol=1e-5)


def test_same_random_state_same_features_different_random_state_different(vit_backbone, images):
    first = make_fungi(vit_backbone).fit_transform(images)
    again = make_fungi(TimmBackbone(tiny_vit())).fit_transform(images)
    other = make_fungi(vit_backbone, random_state=1).fit_transform(images)
    np.testing.assert_array_equal(first, again)
    width = vit_backbone.module.embed_dim
    np.testing.assert_array_equal(first[:, :width], other[:, :width])  # the embedding has no randomness
    for block in range(1, 4):
        assert not np.allclose(
            first[:, block * width : (block + 1) * width], other[:, block * width : (block + 1) * width]
        )


def test_output_layout_blocks_normalised_and_named(vit_backbone, images):
    fungi = make_fungi(vit_backbone).fit(images)
    features = fungi.transform(images)
    width = fungi.embedding_dim_
    assert features.dtype == np.float32 and features.shape == (6, 4 * width) == (6, fungi.n_features_out_)
    for block in range(4):
        norms = np.linalg.norm(features[:, block * width : (block + 1) * width], axis=1)
        np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    names = fungi.get_feature_names_out()
    assert [names[block * width] for block in range(4)] == ["embedding0", "kl0", "dino0", "simclr0"]
    assert len(set(names)) == len(names) == features.shape[1]


def test_projection_dim_and_include_embedding(vit_backbone, images):
    fungi = make_fungi(vit_backbone, losses=("kl",), include_embedding=False, projection_dim=7).fit(images)
    assert fungi.transform(images).shape == (6, 7)
    assert fungi.get_feature_names_out().tolist() == [f"kl{i}" for i in range(7)]
    embedding_only = make_fungi(vit_backbone, losses=()).fit(images)
    assert embedding_only.transform(images).shape == (6, 12)


def test_set_output_pandas(vit_backbone, images):
    pandas = pytest.importorskip("pandas")
    frame = make_fungi(vit_backbone, losses=("kl",)).set_output(transform="pandas").fit_transform(images)
    assert isinstance(frame, pandas.DataFrame) and frame.columns[0] == "embedding0"


def test_image_input_forms_give_identical_features(vit_backbone, images, tmp_path):
    fungi = make_fungi(vit_backbone).fit(images)
    expected = fungi.transform(images)
    as_tensor = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    as_float = images.astype(np.float32) / 255
    as_pil = [Image.fromarray(image) for image in images]
    paths = []
    for index, image in enumerate(as_pil):
        paths.append(tmp_path / f"{index}.png")
        image.save(paths[-1])
    for form in (as_tensor, as_float, as_pil, paths, [str(path) for path in paths], list(images)):
        np.testing.assert_allclose(fungi.transform(form), expected, atol=1e-6)


def test_grey_and_mixed_size_lists(vit_backbone):
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, size=(3, 18, 18), dtype=np.uint8)
    mixed = [grey[0], rng.integers(0, 256, size=(30, 22, 3), dtype=np.uint8), Image.fromarray(grey[1])]
    fungi = make_fungi(vit_backbone).fit(grey)
    assert fungi.transform(mixed).shape == (3, 48)
    np.testing.assert_allclose(fungi.transform(grey[:1]), fungi.transform(mixed[:1]), atol=1e-6)


def test_the_users_module_is_left_exactly_as_given(images):
    model = tiny_vit()
    model.train()
    model.blocks[0].eval()
    model.head_drop.requires_grad_(False)
    model.cls_token.requires_grad_(False)
    training = {name: module.training for name, module in model.named_modules()}
    requires_grad = {name: param.requires_grad for name, param in model.named_parameters()}
    state = {name: value.clone() for name, value in model.state_dict().items()}
    fungi = make_fungi(model).fit(images)
    fungi.transform(images)
    assert training == {name: module.training for name, module in model.named_modules()}
    assert requires_grad == {name: param.requires_grad for name, param in model.named_parameters()}
    assert all(torch.equal(state[name], value) for name, value in model.state_dict().items())
    assert all(not module._forward_hooks for module in model.modules())
    assert all(param.grad is None for param in model.parameters())


def test_clone_shares_the_backbone_and_copies_the_rest(images):
    model = tiny_vit()
    losses = [KLLoss(temperature=3.0)]
    fungi = FungiTransformer(model, losses=losses, random_state=0)
    copy = clone(fungi)
    assert copy.backbone is model
    assert copy.losses[0] is not losses[0] and copy.losses[0].temperature == 3.0
    fungi.fit(images)
    assert not hasattr(clone(fungi), "losses_")
    assert losses[0].__dict__ == {"temperature": 3.0, "latent_dim": 768}  # the parameter was not fitted


def test_clone_keeps_set_output_configuration(vit_backbone):
    fungi = make_fungi(vit_backbone).set_output(transform="pandas")
    assert clone(fungi)._sklearn_output_config == {"transform": "pandas"}


def test_pipeline_and_grid_search_over_losses(vit_backbone):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(24, 16, 16, 3), dtype=np.uint8)
    labels = np.repeat([0, 1], 12)
    images[labels == 1, :8] = 255  # a learnable difference
    pipe = make_pipeline(make_fungi(vit_backbone, losses=("kl",)), PCA(8), KNeighborsClassifier(3))
    grid = GridSearchCV(
        pipe,
        {"fungitransformer__losses": [("kl",), ("kl", SimCLRLoss(grid_size=2, latent_dim=8))]},
        cv=2,
    )
    grid.fit(images, labels)
    assert grid.best_score_ > 0.7
    assert len(grid.cv_results_["params"]) == 2
    assert grid.best_estimator_.named_steps["fungitransformer"].backbone is vit_backbone


@pytest.mark.parametrize("dump", ["pickle", "joblib"])
def test_round_trip_gives_identical_features(dump, vit_backbone, images, tmp_path):
    fungi = make_fungi(vit_backbone).fit(images)
    expected = fungi.transform(images)
    if dump == "pickle":
        loaded = pickle.loads(pickle.dumps(fungi))
    else:
        joblib.dump(fungi, tmp_path / "fungi.joblib")
        loaded = joblib.load(tmp_path / "fungi.joblib")
    np.testing.assert_array_equal(loaded.transform(images), expected)


def test_a_fitted_transformer_pickles_to_at_most_one_and_a_half_times_its_weights(images):
    """The random heads (a DINO head on MobileNetV2's 1280-d embedding is 42 MB in float64) are drawn
    again from their seeds when a transformer is loaded, as the projection is: what a pickle holds is
    the backbone and the negative bank. The loaded transformer gives the same features, bit for bit."""
    from torchvision.models import mobilenet_v2

    from skfungi.backbones.mobilenet import embed_mobilenet

    torch.manual_seed(0)
    net = mobilenet_v2()  # 3.5 M parameters, random (only the size matters here)
    backbone = ImageBackbone(net, layer="features.18.0", embed=embed_mobilenet, input_size=32)
    losses = ("kl", DINOLoss(n_local_crops=2), SimCLRLoss(grid_size=2, n_negatives=6))  # the paper's heads
    fungi = FungiTransformer(backbone, losses=losses, random_state=0, batch_size=64).fit(images)
    dumped = pickle.dumps(fungi)
    assert len(dumped) <= 1.5 * len(pickle.dumps(net))
    restored = pickle.loads(dumped)
    assert torch.equal(restored.losses_[1].student_head_[0], fungi.losses_[1].student_head_[0])
    np.testing.assert_array_equal(restored.transform(images[:2]), fungi.transform(images[:2]))


def test_pickle_does_not_hold_a_dense_projection_matrix():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 64, 4, stride=4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 64))
    backbone = ImageBackbone(net, layer="3", input_size=12)
    images = np.zeros((2, 12, 12, 3), dtype=np.uint8)
    fungi = make_fungi(backbone, losses=(KLLoss(latent_dim=8),), projection_dim=4000).fit(images)
    # a materialised 4000 x 4160 float32 matrix would add 67 MB
    assert len(pickle.dumps(fungi)) < len(pickle.dumps(backbone)) + 200_000


def test_timm_spec_string_resolves_in_fit_not_init(images):
    fungi = FungiTransformer("timm:vit_tiny_patch16_224?pretrained=false", losses=(), random_state=0)
    assert fungi.backbone == "timm:vit_tiny_patch16_224?pretrained=false" and not hasattr(fungi, "backbone_")
    fungi.fit(images[:1])
    assert fungi.backbone_.default_layer == "blocks.11.attn.proj" and fungi.embedding_dim_ == 192
    assert fungi.layer_ is None and fungi.gradient_shape_ is None  # the embedding alone takes no gradient


def test_random_state_seeds_a_random_init_spec_string(images):
    spec = "timm:vit_tiny_patch16_224?pretrained=false"
    state = torch.random.get_rng_state()
    first, again, other = (
        FungiTransformer(spec, losses=("kl",), random_state=seed).fit(images[:2]) for seed in (0, 0, 1)
    )
    assert torch.equal(torch.random.get_rng_state(), state)  # torch's global generator is left alone
    weights = [fungi.backbone_.module.blocks[0].attn.qkv.weight for fungi in (first, again, other)]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])
    np.testing.assert_array_equal(first.transform(images), again.transform(images))


def test_auto_losses_are_the_papers_set_for_the_modality(images):
    from skfungi import TabularMLP

    image_fungi = FungiTransformer(TimmBackbone(tiny_vit()), random_state=0, batch_size=64)
    assert image_fungi.losses == "auto"
    assert [loss.name for loss in image_fungi.fit(images[:2]).losses_] == ["kl", "dino", "simclr"]
    rows = np.random.default_rng(0).normal(size=(8, 3))
    tabular = FungiTransformer(TabularMLP(embedding_dim=4), random_state=0).fit(rows)
    assert [loss.name for loss in tabular.losses_] == ["kl", "simclr"]


def test_projection_buffer_size_does_not_change_features(vit_backbone, images, monkeypatch):
    from skfungi._engine import extractor as _engine

    fungi = make_fungi(vit_backbone, batch_size=2).fit(images)
    buffered = fungi.transform(images)  # one projection for all batches
    monkeypatch.setattr(_engine, "PROJECTION_BUFFER_BYTES", 1)  # one projection per batch
    np.testing.assert_allclose(fungi.transform(images), buffered, atol=1e-6)
