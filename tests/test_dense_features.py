"""DenseFungiTransformer: shapes, seeding, batch independence, negatives, backbones, errors, pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import tiny_cnn, tiny_vit
from test_dense_gradients import cnn_tokens

from skfungi.backbones import ImageBackbone, TimmBackbone
from skfungi.backbones.mobilenet import MOBILENET_V2_LAYER, embed_mobilenet
from skfungi.dense import DenseFungiTransformer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def scenes():
    return np.random.default_rng(1).integers(0, 256, size=(7, 24, 24, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("features", "width"), [("embedding", 12), ("fungi", 24), ("neighbors", 24), (("gradient", "neighbors"), 24)]
)
def test_feature_sets_have_unit_rows_on_the_patch_grid(features, width, scenes):
    dense = DenseFungiTransformer(tiny_vit(), features=features, random_state=0).fit(scenes)
    out = dense.transform(scenes)
    assert out.shape == (7, 2, 2, width) == (7, *dense.grid_shape_, dense.n_features_out_)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, rtol=1e-5)


def test_fungi_features_join_the_token_and_its_gradient(scenes):
    dense = DenseFungiTransformer(tiny_vit(), features=("embedding", "gradient", "neighbors"), random_state=0)
    blocks = dense.fit(scenes).transform_blocks(scenes)
    fungi = DenseFungiTransformer(tiny_vit(), random_state=0).fit(scenes).transform(scenes)
    joined = np.concatenate([blocks["embedding"], blocks["gradient"]], axis=-1) / np.sqrt(2)
    np.testing.assert_allclose(fungi, joined, rtol=1e-5, atol=1e-6)


def test_features_do_not_depend_on_the_batch(scenes):
    dense = DenseFungiTransformer(tiny_vit(), batch_size=4, random_state=0).fit(scenes)
    together = dense.transform(scenes)
    alone = np.concatenate([dense.transform(scenes[i : i + 1]) for i in range(len(scenes))])
    reversed_order = dense.set_params(batch_size=3).transform(scenes[::-1])[::-1]
    np.testing.assert_allclose(alone, together, atol=2e-6)
    np.testing.assert_allclose(reversed_order, together, atol=2e-6)


def test_random_state_decides_the_features(scenes):
    first = DenseFungiTransformer(tiny_vit(), random_state=3).fit(scenes).transform(scenes)
    again = DenseFungiTransformer(tiny_vit(), random_state=3).fit(scenes).transform(scenes)
    other = DenseFungiTransformer(tiny_vit(), random_state=4).fit(scenes).transform(scenes)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first[..., 12:] - other[..., 12:]).max() > 1e-2  # another head and projection
    np.testing.assert_allclose(first[..., :12], other[..., :12], atol=1e-6)  # the same tokens


def test_kept_support_patches_depend_on_the_images_not_their_order(scenes):
    forward = DenseFungiTransformer(tiny_vit(), features="neighbors", random_state=0).fit(scenes)
    backward = DenseFungiTransformer(tiny_vit(), features="neighbors", random_state=0).fit(scenes[::-1])
    rows = [
        np.sort(d.extractor_.index.vectors(np.arange(d.extractor_.index.n_rows_)), axis=0) for d in (forward, backward)
    ]
    assert forward.extractor_.index.n_rows_ == 7 * 2  # half of each image's 4 patches
    np.testing.assert_array_equal(rows[0], rows[1])


def test_negatives_come_from_other_images_and_neighbors_average_them(scenes):
    dense = DenseFungiTransformer(tiny_vit(), features=("embedding", "neighbors"), random_state=0)
    duplicated = np.concatenate([scenes, scenes[:1]])  # an image given twice is one group
    blocks = dense.fit(duplicated).transform_blocks(scenes[:2])
    index, groups = dense.extractor_.index, dense.extractor_.groups
    assert len(groups) == 7 and set(index.groups_.tolist()) == set(range(7))
    rows = index.vectors(np.arange(index.n_rows_))
    for image in range(2):
        units = blocks["embedding"][image].reshape(4, -1)
        similarities = units @ rows.T
        similarities[:, index.groups_ == image] = -np.inf
        nearest = np.argsort(-similarities, axis=1, kind="stable")[:, :2]
        expected = rows[nearest].mean(axis=1)
        expected /= np.linalg.norm(expected, axis=1, keepdims=True)
        np.testing.assert_allclose(blocks["neighbors"][image].reshape(4, -1), expected, atol=1e-6)


def test_a_cnn_with_a_token_function(images):
    backbone = ImageBackbone(tiny_cnn(), layer="pointwise", input_size=8)
    dense = DenseFungiTransformer(backbone, tokens=cnn_tokens, n_negatives=3, random_state=0).fit(images)
    assert dense.transform(images[:2]).shape == (2, 8, 8, 20)
    assert dense.layer_ == "pointwise"


def test_mobilenet_layout_is_recognised_without_a_token_function(images):
    from torchvision.models import mobilenet_v2

    torch.manual_seed(0)
    backbone = ImageBackbone(mobilenet_v2(), layer=MOBILENET_V2_LAYER, embed=embed_mobilenet, input_size=64)
    dense = DenseFungiTransformer(backbone, projection_dim=32, random_state=0).fit(images[:3])
    assert dense.grid_shape_ == (2, 2) and dense.token_dim_ == 1280
    assert dense.transform(images[:1]).shape == (1, 2, 2, 1280 + 32)


def test_timm_cnn_tokens_are_its_feature_map(images):
    import timm

    torch.manual_seed(0)  # timm's default zeroes each block's last BatchNorm, which would zero every gradient
    resnet = timm.create_model("resnet26", pretrained=False, zero_init_last=False)
    dense = DenseFungiTransformer(
        TimmBackbone(resnet), layer="layer4.1.conv3", input_size=64, projection_dim=16, random_state=0
    ).fit(images[:3])
    assert dense.transform(images[:1]).shape == (1, 2, 2, 2048 + 16)


def test_vit_at_another_input_size_interpolates_position_embeddings(images):
    dense = DenseFungiTransformer(tiny_vit(), input_size=32, random_state=0).fit(images[:3])
    assert dense.grid_shape_ == (4, 4)
    assert np.isfinite(dense.transform(images[:2])).all()
    with pytest.raises(ValueError, match="multiple of the ViT's patch size 8"):
        DenseFungiTransformer(tiny_vit(), input_size=20).fit(images)


def pooled_tokens(module: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Tokens coarser than the target layer's positions: that layer cannot give per-patch gradients."""
    return F.avg_pool2d(cnn_tokens(module, inputs), 2)


def test_a_layer_off_the_token_grid_is_refused(images):
    backbone = ImageBackbone(tiny_cnn(), layer="pointwise", input_size=8)
    dense = DenseFungiTransformer(backbone, tokens=pooled_tokens, random_state=0).fit(images)
    with pytest.raises(ValueError, match="has 64 tokens, but the patch grid has 16"):
        dense.transform(images[:1])


def test_unknown_module_needs_a_token_function(images):
    with pytest.raises(TypeError, match="pass tokens=<function>"):
        DenseFungiTransformer(ImageBackbone(tiny_cnn(), layer="pointwise")).fit(images)


@pytest.mark.parametrize("features", [(), ("embedding", "embedding"), ("logits",)])
def test_bad_feature_tuples_are_refused(features, images):
    with pytest.raises(ValueError, match="features must be one of"):
        DenseFungiTransformer(tiny_vit(), features=features).fit(images)


def test_support_smaller_than_the_negatives_is_refused(images):
    dense = DenseFungiTransformer(tiny_vit(), n_negatives=3, random_state=0).fit(images[:2])  # 2 x 2 kept patches
    with pytest.raises(ValueError, match="cannot return 3 neighbours: the index holds 4 rows, 2 of them"):
        dense.transform(images[:1])


def test_pickled_transformer_gives_identical_features(scenes):
    dense = DenseFungiTransformer(tiny_vit(), random_state=0, algorithm="hnsw").fit(scenes)
    restored = pickle.loads(pickle.dumps(dense))
    np.testing.assert_array_equal(restored.transform(scenes), dense.transform(scenes))


def test_unfitted_transform_raises(images):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        DenseFungiTransformer(tiny_vit()).transform(images)
