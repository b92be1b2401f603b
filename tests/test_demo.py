"""The demo's code path on a tiny random network (no assets needed)."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
from sklearn.model_selection import StratifiedShuffleSplit

from skfungi import FungiTransformer, ImageBackbone, datasets
from skfungi.backbones.mobilenet import embed_mobilenet
from skfungi.cli import demo
from skfungi.losses import DINOLoss, KLLoss, SimCLRLoss
from skfungi.protocols import evaluate_knn, feature_blocks

# Small losses: the demo's code path, at a fraction of the paper's view counts.
LOSSES = {
    "kl": KLLoss(latent_dim=8),
    "dino": DINOLoss(n_local_crops=2, latent_dim=8),
    "simclr": SimCLRLoss(grid_size=2),
}


def tiny_mobilenet_like() -> nn.Module:
    """A module shaped like MobileNetV2 where it matters: ``features.18.0`` is a 1x1 conv."""
    torch.manual_seed(0)
    model = nn.Module()
    head = nn.Sequential(nn.Conv2d(8, 12, 1), nn.ReLU())
    model.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), *[nn.Identity()] * 16, head)
    return model.eval()


def tiny_data(n_pool=45, n_fit=6, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 200, (n_pool + n_fit, 12, 12), dtype=np.uint8)
    labels = np.arange(n_pool + n_fit) % 3
    images[:, :4] += (25 * labels).astype(np.uint8)[:, None, None]  # a class-dependent band
    return images[:n_pool], labels[:n_pool], images[n_pool:]


@pytest.fixture(scope="module")
def backbone():
    return ImageBackbone(tiny_mobilenet_like(), embed=embed_mobilenet, input_size=16)


def test_each_feature_set_is_scored_beside_its_no_gradient_control(backbone):
    pool, labels, fit = tiny_data()
    rows, blocks = demo.run_demo(
        backbone, pool, labels, fit, n_train=30, n_test=15, n_splits=3, losses=LOSSES, batch_size=16
    )
    assert list(blocks) == ["embedding", "kl", "dino", "simclr", "dino_views", "simclr_views"]
    assert [(row["features"], row.get("control")) for row in rows] == [
        ("embedding", None),
        ("KL grads", "embedding"),  # KL's one view is the inference view
        ("DINO grads", "DINO views"),
        ("SimCLR grads", "SimCLR views"),
        ("emb + all gradients", "emb + all views"),
    ]
    assert [row["width"] for row in rows] == [12, 12, 12, 12, 48]
    for row in rows:
        assert 0 <= row["top1"][0] <= 1 and row["top1"][1] >= 0
        if "control" in row:
            assert row["gain"][0] == pytest.approx(row["top1"][0] - row["control_top1"][0])
            assert 0 <= row["wins"] <= 3
    table = demo.format_table(rows, 3)
    assert "emb + all views" in table and "(the reference)" in table
    assert max(len(line) for line in table.splitlines()) <= demo.WIDTH
    assert all(block.seconds_per_sample > 0 for block in blocks.values())
    assert "SimCLR views" in demo.format_costs(blocks)


def test_separate_blocks_equal_one_transformer_with_every_block(backbone):
    """The demo's per-block transformers give exactly the columns of one transformer with every block."""
    pool, _, fit = tiny_data(n_pool=10)
    wanted = demo.demo_blocks(LOSSES)
    progress = []
    blocks = demo.extract_blocks(
        backbone,
        wanted,
        fit,
        pool,
        layer=demo.MOBILENET_LAYER,
        batch_size=4,
        on_progress=lambda *event: progress.append(event),
    )
    combined = FungiTransformer(
        backbone,
        losses=[loss for loss in wanted.values() if loss is not None],
        layer=demo.MOBILENET_LAYER,
        batch_size=4,
        random_state=0,
    ).fit(fit)
    features = combined.transform(pool)
    columns = feature_blocks(combined.get_feature_names_out())
    assert list(columns) == list(blocks)
    for name, block in blocks.items():
        np.testing.assert_allclose(block.features, features[:, columns[name]], rtol=1e-5, atol=1e-6)
    transformed = {name: sum(n for block, stage, n in progress if block == name and stage == "transform")
                   for name in blocks}  # fmt: skip
    assert transformed == dict.fromkeys(blocks, len(pool))


def test_control_replaces_each_gradient_by_its_views():
    blocks = ["embedding", "kl", "dino", "simclr", "dino_views", "simclr_views"]
    assert demo.control_of(("kl",), blocks) == ("embedding",)
    assert demo.control_of(("embedding", "kl", "simclr"), blocks) == ("embedding", "simclr_views")
    assert demo.control_of(("dino", "simclr"), blocks) == ("dino_views", "simclr_views")
    assert demo.control_of(("dino",), ["embedding", "dino"]) == ("embedding",)


def test_scores_are_the_knn_protocol_on_random_stratified_splits():
    rng = np.random.default_rng(1)
    labels = np.arange(60) % 3
    blocks = {
        name: demo.Block(name, rng.normal(size=(60, 5)) + labels[:, None], 0.0, 1.0) for name in ("embedding", "kl")
    }
    scores = demo.score_splits(blocks, labels, [("embedding", "kl")], n_splits=2, n_train=40, n_test=20)
    splits = StratifiedShuffleSplit(2, train_size=40, test_size=20, random_state=0).split(np.zeros(60), labels)
    features = np.hstack([blocks["embedding"].features, blocks["kl"].features])
    expected = [evaluate_knn(features[tr], labels[tr], features[te], labels[te])["top1"] for tr, te in splits]
    assert scores == {("embedding", "kl"): expected}


def test_load_demo_data_falls_back_to_digits(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", tmp_path / "nowhere")
    messages = []
    data = demo.load_demo_data(2000, 1000, 300, log=messages.append)
    assert "digits" in data.name and "FALLBACK" in data.name
    assert (data.n_train, data.n_test) == (800, 400)
    assert data.pool.shape == (1200, 8, 8) and data.labels.shape == (1200,) and data.fit_samples.shape == (256, 8, 8)
    assert any("apt-get install dataset-fashion-mnist" in message for message in messages)


def test_main_quick_prints_the_table(monkeypatch, capsys):
    monkeypatch.setattr(datasets, "load_mobilenet_v2", tiny_mobilenet_like)
    pool, labels, fit = tiny_data()
    monkeypatch.setattr(demo, "load_demo_data", lambda *args: demo.DemoData("tiny random", pool, labels, fit, 30, 15))
    monkeypatch.setattr(demo, "demo_blocks", lambda losses=None, blocks=demo.demo_blocks: blocks(LOSSES))
    run_demo = demo.run_demo

    def warning_run(*args, **kwargs):
        warnings.warn("the kl block of sample(s) 3 is exactly zero", RuntimeWarning, stacklevel=1)
        return run_demo(*args, **kwargs)

    monkeypatch.setattr(demo, "run_demo", warning_run)
    assert demo.main(["--quick", "--image-size", "16"]) == 0
    captured = capsys.readouterr()
    output = captured.out
    assert "2 splits of 30 train / 15 test, 16 px" in " ".join(output.split())
    assert max(len(line) for line in output.splitlines()) <= demo.WIDTH
    assert "emb + all gradients" in output and "no-gradient control" in output
    # a warning raised during the run is printed once, after the table, not through the progress bar
    assert output.index("warning: the kl block of sample(s) 3") > output.index("emb + all gradients")
    assert "exactly zero" not in captured.err
    assert output.index("total wall time") > output.index("warning:")
