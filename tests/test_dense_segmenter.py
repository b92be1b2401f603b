"""InContextSegmenter: the scikit-learn contract, label propagation, ignore_index, grid search."""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_vit
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.utils import estimator_checks
from sklearn.utils._param_validation import InvalidParameterError
from timm.models.vision_transformer import VisionTransformer

from skfungi.dense import DenseFungiTransformer, InContextSegmenter, make_segmentation_scenes, mean_iou
from skfungi.dense.labels import patch_label_counts
from skfungi.dense.propagation import patch_labels

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def dense(**settings) -> DenseFungiTransformer:
    """The segmenter's patch features: dense FUNGI on a tiny ViT, seeded."""
    return DenseFungiTransformer(scene_vit(), random_state=0, **settings)


def scene_vit() -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, num_classes=0)


@pytest.fixture(scope="module")
def scenes():
    return make_segmentation_scenes(10, objects="digits", image_size=32, random_state=0)


def test_predictions_are_label_maps_at_the_query_resolution(scenes):
    images, masks = scenes
    seg = InContextSegmenter(dense(), n_neighbors=5).fit(images[:6], masks[:6])
    np.testing.assert_array_equal(seg.classes_, np.unique(masks[:6]))
    proba = seg.predict_proba(images[6:])
    assert proba.shape == (4, 32, 32, len(seg.classes_)) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=-1), 1.0, rtol=1e-5)
    predicted = seg.predict(images[6:])
    np.testing.assert_array_equal(predicted, seg.classes_[proba.argmax(axis=-1)])
    assert seg.score(images[6:], masks[6:]) == pytest.approx(mean_iou(masks[6:], predicted))


def test_images_of_several_sizes_get_maps_of_their_own_size(scenes):
    images, masks = scenes
    seg = InContextSegmenter(dense(), n_neighbors=5).fit(images[:6], masks[:6])
    queries = [images[6], images[7][:20, :28]]
    predicted = seg.predict(queries)
    assert [p.shape for p in predicted] == [(32, 32), (20, 28)]
    assert [p.shape for p in seg.predict_proba(queries)] == [(32, 32, len(seg.classes_)), (20, 28, len(seg.classes_))]


def test_the_bank_holds_each_patch_feature_with_its_pixel_fractions(scenes):
    images, masks = scenes
    seg = InContextSegmenter(dense(), n_neighbors=3).fit(images[:4], masks[:4])
    bank = seg.memory_bank_
    assert bank.n_patches_ == 4 * 16
    np.testing.assert_allclose(
        bank.index_.vectors(np.arange(bank.n_patches_)), seg.transformer_.transform(images[:4]).reshape(64, -1)
    )
    counts = np.concatenate([patch_label_counts(mask, (4, 4), seg.classes_) for mask in masks[:4]])
    np.testing.assert_allclose(bank.labels_, counts / counts.sum(1, keepdims=True), rtol=1e-6)


def test_patch_labels_are_pixel_fractions_or_the_majority():
    mask = np.array([[0, 0, 1, 1], [0, 2, 1, 255], [3, 3, 255, 255], [3, 3, 255, 255]])
    counts = patch_label_counts(mask, (2, 2), np.array([0, 1, 2, 3]))
    np.testing.assert_array_equal(counts, [[3, 0, 1, 0], [0, 3, 0, 0], [0, 0, 0, 4], [0, 0, 0, 0]])
    majority = patch_labels(counts[:3], "majority")
    np.testing.assert_array_equal(majority, np.eye(4)[[0, 1, 3]])


def test_ignore_index_counts_nowhere(scenes):
    images, masks = scenes
    masks = masks.copy()
    masks[:6, :16] = 255  # the top half of every support image: two rows of patches left out
    seg = InContextSegmenter(dense(), n_neighbors=5).fit(images[:6], masks[:6])
    assert 255 not in seg.classes_
    assert seg.memory_bank_.n_patches_ == 6 * 8
    truth = masks[6:].copy()
    predicted = seg.predict(images[6:])
    truth[:, :, :10] = 255
    expected = mean_iou([t[:, 10:] for t in truth], [p[:, 10:] for p in predicted], ignore_index=None)
    assert seg.score(images[6:], truth) == pytest.approx(expected)


def test_grid_search_over_features_and_neighbours(scenes):
    images, masks = scenes
    search = GridSearchCV(
        InContextSegmenter(dense()),
        {"transformer__features": ["embedding", "fungi"], "n_neighbors": [3, 10]},
        cv=KFold(2),
    ).fit(images, masks)
    assert len(search.cv_results_["params"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_.predict(images[:2]).shape == (2, 32, 32)


def test_clone_shares_the_backbone_and_pickling_keeps_predictions(scenes):
    images, masks = scenes
    seg = InContextSegmenter(dense(), n_neighbors=5, algorithm="hnsw")
    assert clone(seg).transformer.backbone is seg.transformer.backbone  # the module is shared, never copied
    seg.fit(images[:6], masks[:6])
    restored = pickle.loads(pickle.dumps(seg))
    np.testing.assert_array_equal(restored.predict_proba(images[6:]), seg.predict_proba(images[6:]))


def test_bad_masks_are_named(scenes):
    images, masks = scenes
    seg = InContextSegmenter(dense(), n_neighbors=5)
    with pytest.raises(ValueError, match="got 5 masks for 6 images"):
        seg.fit(images[:6], masks[:5])
    with pytest.raises(ValueError, match="mask 2 has shape \\(32, 30\\), but image 2 is \\(32, 32\\)"):
        seg.fit(images[:4], [masks[0], masks[1], masks[2][:, :30], masks[3]])
    with pytest.raises(TypeError, match="class ids must be integers"):
        seg.fit(images[:4], masks[:4].astype(float))
    with pytest.raises(ValueError, match="fewer than n_neighbors=30"):
        InContextSegmenter(DenseFungiTransformer(scene_vit(), features="embedding")).fit(images[:1], masks[:1])
    with pytest.raises(ValueError, match="at least 2 distinct images, got 1"):
        seg.fit(images[[0, 0]], masks[[0, 0]])
    with pytest.raises(ValueError, match="every pixel is ignore_index"):
        seg.fit(images[:2], np.full_like(masks[:2], 255))


# scikit-learn skips all of its checks for estimators that do not take 2-D arrays; these are the ones
# that do not need tabular data, run by hand.
APPLICABLE_CHECKS = [
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_estimator_tags_renamed",
    "check_valid_tag_types",
    "check_no_attributes_set_in_init",
    "check_parameters_default_constructible",
    "check_get_params_invariance",
    "check_set_params",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_mixin_order",
    "check_estimators_unfitted",
]


@pytest.mark.parametrize("check", APPLICABLE_CHECKS)
@pytest.mark.parametrize("kind", [InContextSegmenter, DenseFungiTransformer])
def test_sklearn_estimator_checks_that_apply(kind, check):
    dense_features = DenseFungiTransformer(tiny_vit(), random_state=0)
    estimator = dense_features if kind is DenseFungiTransformer else InContextSegmenter(dense_features)
    functools.partial(getattr(estimator_checks, check), kind.__name__)(estimator)


def test_fit_returns_self_leaves_parameters_alone_and_is_idempotent(scenes):
    images, masks = scenes
    seg = InContextSegmenter(dense(), n_neighbors=5)
    before = seg.get_params()
    assert seg.fit(images[:6], masks[:6]) is seg
    assert seg.get_params() == before
    first = seg.predict_proba(images[6:])
    np.testing.assert_array_equal(seg.fit(images[:6], masks[:6]).predict_proba(images[6:]), first)


@pytest.mark.parametrize("kind", [InContextSegmenter, DenseFungiTransformer])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_backbone_with_non_finite_weights_is_refused(scenes, kind, value):
    images, masks = scenes
    vit = scene_vit()
    with torch.no_grad():
        vit.blocks[0].attn.qkv.weight[3, 1] = value
    dense_features = DenseFungiTransformer(vit, random_state=0)
    estimator = dense_features if kind is DenseFungiTransformer else InContextSegmenter(dense_features)
    with pytest.raises(ValueError, match=r"parameter 'blocks\.0\.attn\.qkv\.weight' contains NaN or infinite values"):
        estimator.fit(images[:4], masks[:4])


def relabelled(labels: np.ndarray, ids: np.ndarray, new_ids: np.ndarray) -> np.ndarray:
    return new_ids[np.searchsorted(ids, labels)]


def test_class_ids_of_any_size_are_kept_as_they_are(scenes):
    images, masks = scenes
    ids = np.unique(masks).astype(np.int64)
    huge = np.where(ids == 0, 0, 2**31 + ids * 2**40)  # 0, 2**31 + 2**40, ...: the same order
    plain = InContextSegmenter(dense(), n_neighbors=5).fit(images[:6], masks[:6])
    seg = InContextSegmenter(dense(), n_neighbors=5)
    seg.fit(images[:6], relabelled(masks[:6], ids, huge))
    np.testing.assert_array_equal(seg.classes_, relabelled(plain.classes_, ids, huge))
    np.testing.assert_array_equal(seg.predict(images[6:]), relabelled(plain.predict(images[6:]), ids, huge))
    assert seg.score(images[6:], relabelled(masks[6:], ids, huge)) == plain.score(images[6:], masks[6:])


def test_a_negative_ignore_index_marks_ignored_pixels(scenes):
    images, masks = scenes
    masks = masks.astype(np.int64)
    masks[:, :16] = 255  # the top half of every image: two rows of patches left out of the bank
    negative = np.where(masks == 255, -1, masks)
    seg = InContextSegmenter(dense(), n_neighbors=5).fit(images[:6], masks[:6])
    seg_negative = InContextSegmenter(dense(), n_neighbors=5, ignore_index=-1)
    seg_negative.fit(images[:6], negative[:6])
    assert seg_negative.memory_bank_.n_patches_ == 6 * 8
    np.testing.assert_array_equal(seg_negative.classes_, seg.classes_)
    np.testing.assert_array_equal(seg_negative.predict_proba(images[6:]), seg.predict_proba(images[6:]))
    assert seg_negative.score(images[6:], negative[6:]) == seg.score(images[6:], masks[6:])
    negative[1, 20, 3] = -2
    with pytest.raises(ValueError, match=r"mask 1 holds the negative class id -2; class ids must be >= 0 \(only"):
        seg_negative.fit(images[:6], negative[:6])


def test_score_is_a_fraction_and_every_miou_table_says_percent_of_it(scenes):
    images, masks = scenes
    seg = InContextSegmenter(dense(), n_neighbors=5).fit(images[:6], masks[:6])
    assert 0 <= seg.score(images[6:], masks[6:]) <= 1
    root = Path(__file__).parents[1]
    for page in ("docs/segmentation.md", "docs/benchmarks.md", "benchmarks/segmentation.py"):
        lines = (root / page).read_text().splitlines()
        headers = [line for line in lines if "| mIoU" in line]
        assert headers and all("| mIoU % (100 x `score`) |" in line for line in headers), page
    assert "return it as a fraction in [0, 1]" in (root / "docs" / "segmentation.md").read_text()


def test_a_backbone_stands_for_a_dense_transformer_with_its_defaults(scenes):
    """The convenience form: a module (or spec string) is DenseFungiTransformer(module); the clone shares it."""
    images, masks = scenes
    vit = scene_vit()
    seg = InContextSegmenter(vit, n_neighbors=5)
    assert clone(seg).transformer is vit  # never deep-copied
    seg.fit(images[:6], masks[:6])
    assert isinstance(seg.transformer_, DenseFungiTransformer) and seg.transformer_.backbone is vit
    assert seg.predict(images[6:]).shape == (4, 32, 32)
    with pytest.raises(InvalidParameterError, match="'transformer' parameter of InContextSegmenter"):
        InContextSegmenter(42).fit(images[:6], masks[:6])
