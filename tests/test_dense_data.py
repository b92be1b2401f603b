"""Synthetic scenes, VOC / ADE20K folder readers, label maps and mean IoU."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from skfungi.dense import (
    LabelMapFiles,
    load_ade20k_segmentation,
    load_voc_segmentation,
    make_segmentation_scenes,
    mean_iou,
)
from skfungi.dense.labels import as_label_maps, patch_label_counts, upsample_scores

# -- synthetic scenes -----------------------------------------------------------


def test_scenes_are_seeded_and_a_prefix_of_a_larger_set():
    images, masks = make_segmentation_scenes(5, objects="digits", image_size=48, random_state=7)
    again, again_masks = make_segmentation_scenes(3, objects="digits", image_size=48, random_state=7)
    other, _ = make_segmentation_scenes(3, objects="digits", image_size=48, random_state=8)
    np.testing.assert_array_equal(images[:3], again)
    np.testing.assert_array_equal(masks[:3], again_masks)
    assert not np.array_equal(images[:3], other)
    assert images.shape == (5, 48, 48, 3) and images.dtype == np.uint8 and masks.dtype == np.uint8


def test_scene_labels_mark_the_painted_objects():
    _, masks = make_segmentation_scenes(20, objects="digits", image_size=48, n_objects=(2, 4), random_state=0)
    assert set(np.unique(masks)) <= set(range(11))
    assert len(np.unique(masks)) == 11  # every digit and the background appear in 20 scenes
    objects_per_scene = [len(np.unique(mask)) - 1 for mask in masks]
    assert 1 <= min(objects_per_scene) and max(objects_per_scene) <= 4  # occlusion may hide one


def test_scenes_from_your_own_objects():
    squares = np.zeros((2, 6, 6), dtype=np.uint8)
    squares[:, 1:5, 1:5] = 255
    _, masks = make_segmentation_scenes(
        4, objects=(squares, np.array([3, 7])), image_size=32, n_objects=(1, 1), random_state=0
    )
    for mask in masks:
        assert np.unique(mask).tolist() in ([0, 4], [0, 8])  # one object per scene, class + 1
        rows, cols = np.nonzero(mask)
        # a square (its corners softened by the resize) between 0.25 and 0.5 of the side
        assert 0.25 * 32 * 4 / 6 - 2 <= rows.max() - rows.min() + 1 == cols.max() - cols.min() + 1 <= 16


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "validation"}, "split must be 'train' or 'test'"),
        ({"n_objects": (3, 2)}, "n_objects must be"),
        ({"object_size": (0.0, 0.5)}, "object_size must be"),
        ({"objects": "cifar"}, "objects must be 'fashion_mnist', 'digits'"),
        ({"objects": (np.zeros((2, 4, 4)), np.zeros(2, int))}, "uint8 array"),
    ],
)
def test_bad_scene_settings_are_refused(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make_segmentation_scenes(2, **{"objects": "digits", **kwargs})


# -- folder layouts -------------------------------------------------------------


def palette_png(path, labels: np.ndarray) -> None:
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette([value for index in range(256) for value in (index, 255 - index, (7 * index) % 256)])
    image.save(path)


def write_image(path, height: int, width: int) -> None:
    Image.fromarray(np.full((height, width, 3), 120, dtype=np.uint8)).save(path)


def test_voc_layout(tmp_path):
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (tmp_path / folder).mkdir(parents=True)
    for name, height in (("2007_000001", 5), ("2007_000002", 6), ("2007_000003", 7)):
        write_image(tmp_path / "JPEGImages" / f"{name}.jpg", height, 4)
        labels = np.zeros((height, 4), dtype=np.uint8)
        labels[0, 0], labels[1, 1] = 15, 255
        palette_png(tmp_path / "SegmentationClass" / f"{name}.png", labels)
    (tmp_path / "ImageSets/Segmentation/val.txt").write_text("2007_000003\n2007_000001\n")
    images, masks = load_voc_segmentation(tmp_path, split="val")
    assert [p.rsplit("/", 1)[-1] for p in images] == ["2007_000003.jpg", "2007_000001.jpg"]
    assert masks[0].shape == (7, 4) and masks[0].dtype == np.int64
    assert masks[0][0, 0] == 15 and masks[0][1, 1] == 255 and masks[1].shape == (5, 4)
    everything, _ = load_voc_segmentation(tmp_path, split=None)
    assert len(everything) == 3
    with pytest.raises(FileNotFoundError, match=r"train\.txt not found"):
        load_voc_segmentation(tmp_path, split="train")
    (tmp_path / "JPEGImages" / "2007_000001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="no image 2007_000001"):
        load_voc_segmentation(tmp_path)


def test_ade20k_layout_reduces_the_zero_label(tmp_path):
    for folder in ("images/validation", "annotations/validation"):
        (tmp_path / folder).mkdir(parents=True)
    write_image(tmp_path / "images/validation/ADE_val_00000001.jpg", 3, 3)
    Image.fromarray(np.array([[0, 1, 150]] * 3, dtype=np.uint8), mode="L").save(
        tmp_path / "annotations/validation/ADE_val_00000001.png"
    )
    images, masks = load_ade20k_segmentation(tmp_path)
    assert images[0].endswith("ADE_val_00000001.jpg")
    np.testing.assert_array_equal(masks[0][0], [255, 0, 149])
    raw = load_ade20k_segmentation(tmp_path, reduce_zero_label=False)[1]
    np.testing.assert_array_equal(raw[0][0], [0, 1, 150])
    with pytest.raises(FileNotFoundError, match="expected a folder"):
        load_ade20k_segmentation(tmp_path, split="training")


# -- label maps -------------------------------------------------------------------


def test_label_maps_accept_arrays_images_and_paths(tmp_path):
    labels = np.array([[0, 3], [255, 1]])
    palette_png(tmp_path / "mask.png", labels)
    maps = as_label_maps([labels.astype(np.uint8), Image.open(tmp_path / "mask.png"), tmp_path / "mask.png"])
    for decoded in maps:
        np.testing.assert_array_equal(decoded, labels)
    assert isinstance(LabelMapFiles([tmp_path / "mask.png"])[0], np.ndarray)


def test_bad_label_maps_name_the_sample(tmp_path):
    Image.fromarray(np.zeros((2, 2, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="mode 'RGB'; label maps must be single-channel"):
        as_label_maps([tmp_path / "rgb.png"])[0]
    with pytest.raises(ValueError, match="mask 1 holds the negative class id -1"):
        as_label_maps([np.zeros((2, 2), int), -np.ones((2, 2), int)])[1]
    with pytest.raises(ValueError, match="mask 0 has shape \\(2, 2, 3\\)"):
        as_label_maps([np.zeros((2, 2, 3), int)])[0]
    with pytest.raises(ValueError, match="an \\(N, H, W\\) array"):
        as_label_maps(np.zeros((2, 2), int))


def test_label_maps_beyond_int64_are_refused_and_huge_ids_kept():
    with pytest.raises(ValueError, match="mask 0 holds class id 9223372036854775808, beyond int64's range"):
        as_label_maps([np.full((2, 2), 2**63, np.uint64)])[0]
    np.testing.assert_array_equal(as_label_maps([np.full((2, 2), 2**40, np.uint64)])[0], np.full((2, 2), 2**40))


def test_the_ignore_index_may_be_negative_and_other_negative_ids_are_refused():
    maps = as_label_maps([np.array([[0, -1], [3, 1]])], ignore_index=-1)
    np.testing.assert_array_equal(maps[0], [[0, -1], [3, 1]])
    with pytest.raises(ValueError, match=r"mask 0 holds the negative class id -1; .*now 255.*pass ignore_index=-1 if"):
        as_label_maps([np.array([[0, -1]])], ignore_index=255)[0]
    counts = patch_label_counts(np.array([[0, -1], [3, -1]]), (1, 1), np.array([0, 3]))
    np.testing.assert_array_equal(counts, [[1, 1]])  # -1 counts nowhere, never as the last class


# -- mean IoU and upsampling ----------------------------------------------------


def test_mean_iou_sums_counts_over_the_data_set():
    truth = [np.array([[0, 0, 1, 255]]), np.array([[1, 1, 2, 2]])]
    pred = [np.array([[0, 1, 1, 2]]), np.array([[1, 1, 2, 0]])]
    # class 0: TP 1, FP 1, FN 1 -> 1/3; class 1: TP 3, FP 1, FN 0 -> 3/4; class 2: TP 1, FP 0, FN 1 -> 1/2
    assert mean_iou(truth, pred) == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert mean_iou(truth, pred, labels=[1]) == pytest.approx(3 / 4)
    # the ignored pixel counts once 255 is an ordinary class: class 2 gains an FP, class 255 an FN
    assert mean_iou(truth, pred, ignore_index=None) == pytest.approx((1 / 3 + 3 / 4 + 1 / 3 + 0) / 4)
    with pytest.raises(ValueError, match="image 0: the truth has shape"):
        mean_iou([np.zeros((2, 2))], [np.zeros((2, 3))])


def test_mean_iou_of_class_ids_of_any_size():
    truth = [np.array([[0, 0, 1, 255]]), np.array([[1, 1, 2, 2]])]
    pred = [np.array([[0, 1, 1, 2]]), np.array([[1, 1, 2, 0]])]
    shift = 2**40
    shifted = mean_iou([t + shift for t in truth], [p + shift for p in pred], ignore_index=255 + shift)
    assert shifted == mean_iou(truth, pred)
    assert mean_iou([t - 7 for t in truth], [p - 7 for p in pred], ignore_index=248) == mean_iou(truth, pred)


def test_upsampled_scores_keep_each_pixel_a_distribution():
    scores = np.random.default_rng(0).dirichlet(np.ones(3), size=(2, 3)).astype(np.float32)
    upsampled = upsample_scores(scores, (8, 12))
    assert upsampled.shape == (8, 12, 3)
    np.testing.assert_allclose(upsampled.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(upsample_scores(scores, (2, 3)), scores)
