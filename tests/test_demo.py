"""Smoke tests of the demo's code path on a tiny random network (no assets needed)."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from skfungi import FungiTransformer, ImageBackbone, datasets
from skfungi.cli import demo


def tiny_mobilenet_like() -> nn.Module:
    """A module shaped like MobileNetV2 where it matters: ``features.18.0`` is a 1x1 conv."""
    torch.manual_seed(0)
    model = nn.Module()
    head = nn.Sequential(nn.Conv2d(8, 12, 1), nn.ReLU())
    model.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), *[nn.Identity()] * 16, head)
    return model.eval()


def tiny_data(n_train=30, n_test=12, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (n_train + n_test, 12, 12), dtype=np.uint8)
    y = np.arange(n_train + n_test) % 3
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


@pytest.fixture(scope="module")
def backbone():
    return ImageBackbone(tiny_mobilenet_like(), embed=demo.embed_mobilenet, input_size=16)


def test_run_demo_table(backbone):
    X_train, y_train, X_test, y_test = tiny_data()
    lines = []
    rows = demo.run_demo(backbone, demo.MOBILENET_LAYER, X_train, y_train, X_test, y_test, log=lines.append)
    assert [row["features"] for row in rows] == [
        "embeddings",
        "KL grads",
        "DINO grads",
        "SimCLR grads",
        "embeddings + all gradients",
    ]
    assert [row["width"] for row in rows] == [12, 12, 12, 12, 48]
    assert [row["pca"] for row in rows] == [12, 12, 12, 12, 30]
    for row in rows:
        assert 0.0 <= row["knn_accuracy"] <= 1.0 and 0.0 <= row["mean_per_class"] <= 1.0
        assert row["ms_per_image"] > 0
    assert rows[-1]["ms_per_image"] == pytest.approx(sum(row["ms_per_image"] for row in rows[:-1]))
    table = demo.format_table(rows)
    assert "embeddings + all gradients" in table and "kNN acc" in table
    assert any("[simclr]" in line for line in lines)


def test_separate_blocks_equal_one_combined_transformer(backbone):
    """The demo's per-block transformers give exactly the columns of one combined transformer."""
    X_train, _, X_test, _ = tiny_data(n_train=20, n_test=6)
    blocks = demo.extract_blocks(
        backbone, ("kl", "dino", "simclr"), X_train, X_test, layer=demo.MOBILENET_LAYER, log=lambda *a: None
    )
    combined = FungiTransformer(backbone, layer=demo.MOBILENET_LAYER, batch_size=256, random_state=0).fit(X_train)
    parts = demo.split_blocks(combined, combined.transform(X_test))
    assert list(parts) == ["embedding", "kl", "dino", "simclr"]
    for block in blocks:
        np.testing.assert_allclose(block.test, parts[block.name], rtol=1e-5, atol=1e-6)


def test_knn_scores_perfect_on_separable_data():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 5)) * 10
    y_train, y_test = np.arange(60) % 3, np.arange(30) % 3
    train = centres[y_train] + rng.normal(size=(60, 5))
    test = centres[y_test] + rng.normal(size=(30, 5))
    assert demo.knn_scores(train, y_train, test, y_test) == (1.0, 1.0)


def test_load_demo_data_falls_back_to_digits(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", tmp_path / "nowhere")
    messages = []
    name, X_train, _, X_test, _ = demo.load_demo_data(2000, 1000, log=messages.append)
    assert "digits" in name and "FALLBACK" in name
    assert X_train.shape == (1000, 8, 8) and X_test.shape == (797, 8, 8)
    assert any("apt-get install dataset-fashion-mnist" in message for message in messages)


def test_main_quick_prints_the_table(monkeypatch, capsys):
    monkeypatch.setattr(datasets, "load_mobilenet_v2", tiny_mobilenet_like)
    monkeypatch.setattr(demo, "load_demo_data", lambda n_train, n_test: ("tiny random", *tiny_data()))
    assert demo.main(["--quick", "--image-size", "16"]) == 0
    output = capsys.readouterr().out
    assert "image size 16 px" in output
    assert "embeddings + all gradients" in output
    assert "total wall time" in output
