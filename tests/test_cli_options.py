"""``skfungi extract``'s tables of texts, the labels it stores, and the options ``--losses`` and ``--threads``."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch
from cli_support import BACKBONE, error_line, extract, files_under, write_images

from skfungi import FungiTransformer, cli
from skfungi.cli.main import build_parser
from skfungi.cli.options import COMMAND_LOSSES
from skfungi.losses import LOSSES, SUFFIX

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRANSFORM = FungiTransformer.transform


def write_table(path, columns: dict) -> str:
    """``columns`` as a CSV or Parquet table (by ``path``'s extension), with the column types pandas gives them."""
    table = pd.DataFrame(columns)
    table.to_csv(path, index=False) if path.suffix == ".csv" else table.to_parquet(path)
    return path


# -- labels: stored in a form every OUTPUT format holds, checked before any work --------------------


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize(("labels", "kind"), [(["good", "bad", "good"], "U"), ([3, 1, 3], "i")])
def test_table_labels_keep_their_type_and_load_without_pickle(tmp_path, bert_dir, suffix, labels, kind):
    path = write_table(tmp_path / f"texts{suffix}", {"text": ["the cat sat", "a dog", "the bird"], "mood": labels})
    options = ["--label-column", "mood", "--losses", "kl"]
    assert extract(path, tmp_path / "f.npz", *options, backbone=f"hf:{bert_dir}") == 0
    with np.load(tmp_path / "f.npz", allow_pickle=False) as stored:
        assert stored["labels"].dtype.kind == kind and stored["labels"].tolist() == labels
        assert stored["samples"].tolist() == ["0", "1", "2"]
    assert extract(path, tmp_path / "f.parquet", *options, backbone=f"hf:{bert_dir}") == 0
    assert pd.read_parquet(tmp_path / "f.parquet")["label"].tolist() == labels


def test_labels_no_output_format_holds_are_refused_before_any_work(tmp_path, monkeypatch, capsys):
    from skfungi.cli import extract as extract_module

    write_images(tmp_path / "images", {"a": 2, "b": 1})
    read_input = extract_module.read_input

    def objects_as_labels(*args, **kwargs):
        source = read_input(*args, **kwargs)
        source.labels = np.asarray([{"a": 1}, {"a": 2}, None], dtype=object)
        return source

    monkeypatch.setattr(extract_module, "read_input", objects_as_labels)
    fits = []
    monkeypatch.setattr(FungiTransformer, "fit", lambda self, X, y=None: fits.append(X))
    before = files_under(tmp_path)
    for suffix in (".npz", ".parquet"):
        assert extract(tmp_path / "images", tmp_path / f"f{suffix}", "--losses", "kl") == 1
        assert f"f{suffix}' cannot hold labels of dtype object: {suffix} holds strings" in error_line(capsys)
    assert fits == [] and files_under(tmp_path) == before


# -- text columns are texts, whatever their cells look like ----------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_text_column_of_numbers_is_read_as_texts(tmp_path, bert_dir, suffix):
    path = write_table(tmp_path / f"numbers{suffix}", {"text": [12, 2024, 7], "year": [1999, 2000, 1999]})
    options = ["--label-column", "year", "--losses", "kl"]
    assert extract(path, tmp_path / "f.npz", *options, backbone=f"hf:{bert_dir}") == 0
    fungi = FungiTransformer(f"hf:{bert_dir}", losses=("kl",), random_state=0).fit(["12", "2024", "7"])
    with np.load(tmp_path / "f.npz", allow_pickle=False) as stored:
        np.testing.assert_allclose(stored["features"], fungi.transform(["12", "2024", "7"]), rtol=1e-5, atol=1e-6)
        assert stored["labels"].tolist() == [1999, 2000, 1999] and stored["labels"].dtype.kind == "i"


def test_an_empty_cell_of_a_text_column_of_numbers_is_still_missing(tmp_path, bert_dir, capsys):
    path = tmp_path / "numbers.csv"
    path.write_text("text,mood\n12,good\n,bad\n2024,good\n")
    assert extract(path, tmp_path / "f.npz", "--losses", "kl", backbone=f"hf:{bert_dir}") == 1
    assert "cannot read '1' (column 'text' holds nan, not a text)" in error_line(capsys)


# -- --losses: the help and the error name the same losses, and all of them run ---------------------


def loss_names_in(text: str) -> set[str]:
    """Which of the library's loss names (``kl``, ..., ``simclr_views``) ``text`` mentions."""
    names = [*LOSSES, *(name + SUFFIX for name in LOSSES)]
    return {name for name in names if re.search(rf"(?<![\w']){name}(?![\w'])", text)}


def test_losses_help_and_error_list_exactly_the_losses_the_command_takes(tmp_path, capsys):
    (losses,) = [action for action in build_parser()._subparsers._group_actions[0].choices["extract"]._actions
                 if "--losses" in action.option_strings]  # fmt: skip
    assert loss_names_in(losses.help) == set(COMMAND_LOSSES) == {"kl", "dino", "simclr", "dino_views", "simclr_views"}
    write_images(tmp_path / "images", {"a": 2})
    for wrong in ("kl,barlow", "kl_views"):
        assert extract(tmp_path / "images", tmp_path / "f.npy", "--losses", wrong) == 1
        line = error_line(capsys)
        assert f"unknown loss {wrong.split(',')[-1]!r}" in line and "FungiLoss" not in line
        assert loss_names_in(line.split("use", 1)[1]) == set(COMMAND_LOSSES)


def test_the_no_gradient_controls_are_extracted_from_the_command_line(tmp_path):
    write_images(tmp_path / "images", {"a": 2, "b": 1})
    assert extract(tmp_path / "images", tmp_path / "f.parquet", "--losses", "dino_views,simclr_views") == 0
    table = pd.read_parquet(tmp_path / "f.parquet")
    assert table.columns.tolist() == ["sample", "label", "embedding", "dino_views", "simclr_views"]


# -- --threads ------------------------------------------------------------------------------------------


def threads_seen_by_transform(monkeypatch) -> list[int]:
    seen = []
    monkeypatch.setattr(
        FungiTransformer, "transform", lambda self, X: seen.append(torch.get_num_threads()) or TRANSFORM(self, X)
    )
    return seen


@pytest.mark.parametrize(("options", "threads", "reported"), [(["--threads", "2"], 2, "(--threads)"), ([], 1, "")])
def test_threads_reach_torch_for_the_run_only(tmp_path, monkeypatch, capsys, options, threads, reported):
    write_images(tmp_path / "images", {"a": 3})
    seen = threads_seen_by_transform(monkeypatch)
    argv = ["extract", str(tmp_path / "images"), "-o", str(tmp_path / "f.npy"), "--backbone", BACKBONE]
    assert cli.main([*argv, "--losses", "kl", "--chunk-size", "2", "--verbose", *options]) == 0
    assert seen == [threads, threads]
    assert torch.get_num_threads() == 1  # restored (one_torch_thread)
    assert f"skfungi: torch runs {threads} thread(s) {reported}".strip() in capsys.readouterr().err


def test_threads_must_be_a_positive_integer(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["extract", "in", "-o", "f.npy", "--backbone", BACKBONE, "--threads", "0"])
    assert exit_info.value.code == 2
    assert "--threads: expected a positive integer, got '0'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["extract", "evaluate"])
def test_threads_beyond_what_a_machine_can_start_are_refused(capsys, command):
    """--threads 100000 reached torch.set_num_threads: the run died loading a library ('failed to map segment from
    shared object'), and 10**6 with a segmentation fault."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "in", "-o", "f.npy", "--backbone", BACKBONE, "--threads", "100000"])
    assert exit_info.value.code == 2
    assert "--threads: expected at most 1024 threads, got '100000'" in capsys.readouterr().err
