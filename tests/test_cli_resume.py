"""``skfungi extract`` under faults: nothing written by a bad command, resumption without refitting, damaged
chunks, a second run on the same OUTPUT, SIGTERM / SIGINT mid-chunk, a full disk."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from cli_support import (
    SUBPROCESS_BACKBONE,
    command_process,
    error_line,
    extract,
    files_under,
    write_images,
)

from skfungi import FungiTransformer, cli
from skfungi.cli import chunks as chunks_module
from skfungi.cli.chunks import LOCK, MANIFEST
from skfungi.cli.main import EXIT_INTERRUPTED, EXIT_TERMINATED
from skfungi.cli.outputs import WRITERS

TRANSFORM = FungiTransformer.transform
FIT = FungiTransformer.fit


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Counted:
    """Replace FungiTransformer.transform and .fit: count the calls; transform raises ``interruption`` after ``n``."""

    def __init__(self, monkeypatch, n=10**9, interruption=KeyboardInterrupt):
        self.transforms, self.fits = 0, 0

        def transform(fungi, X):
            self.transforms += 1
            if self.transforms > n:
                raise interruption
            return TRANSFORM(fungi, X)

        def fit(fungi, X, y=None):
            self.fits += 1
            return FIT(fungi, X, y)

        monkeypatch.setattr(FungiTransformer, "transform", transform)
        monkeypatch.setattr(FungiTransformer, "fit", fit)


OPTIONS = ("--losses", "kl,simclr", "--chunk-size", "2")


def _interrupted(tmp_path, monkeypatch, capsys, output, n_chunks=2):
    """Images a/0-3, b/0-2 extracted to ``output`` until ``n_chunks`` chunks are done, then interrupted."""
    write_images(tmp_path / "images", {"a": 4, "b": 3})
    Counted(monkeypatch, n=n_chunks)
    assert extract(tmp_path / "images", output, *OPTIONS) == EXIT_INTERRUPTED
    assert "rerun the same command" in capsys.readouterr().err
    monkeypatch.undo()


# -- resumption -----------------------------------------------------------------------------


def test_interrupted_extraction_resumes_without_fitting_again(tmp_path, monkeypatch, capsys):
    output, parts = tmp_path / "f.parquet", tmp_path / "f.parquet.parts"
    _interrupted(tmp_path, monkeypatch, capsys, output)
    assert not output.exists()
    chunk_files = ["chunk-000000.npz", "chunk-000001.npz"]
    assert sorted(p.name for p in parts.iterdir()) == sorted([*chunk_files, MANIFEST, "transformer.pkl"])

    resumed = Counted(monkeypatch)
    assert extract(tmp_path / "images", output, *OPTIONS) == 0
    assert (resumed.fits, resumed.transforms) == (0, 2)  # 4 chunks of 2 samples, 2 were done; no refit
    assert not parts.exists()
    monkeypatch.undo()
    assert extract(tmp_path / "images", tmp_path / "whole.parquet", *OPTIONS) == 0
    assert output.read_bytes() == (tmp_path / "whole.parquet").read_bytes()


def test_resume_with_other_settings_is_refused(tmp_path, monkeypatch, capsys):
    output = tmp_path / "f.npy"
    _interrupted(tmp_path, monkeypatch, capsys, output, n_chunks=1)
    before = files_under(tmp_path)
    assert extract(tmp_path / "images", output, *OPTIONS, "--seed", "1") == 1
    line = error_line(capsys)
    assert "seed: 0 then, 1 now" in line and "--restart" in line
    assert files_under(tmp_path) == before
    (tmp_path / "images" / "a" / "img0.png").unlink()  # the input changed as well
    assert extract(tmp_path / "images", output, *OPTIONS) == 1
    assert "input:" in error_line(capsys)
    assert extract(tmp_path / "images", output, *OPTIONS, "--restart") == 0
    assert np.load(output).shape == (6, 36)


def _replace_the_transformer(tmp_path, parts):
    shutil.copy(tmp_path / "other.npy.parts" / "transformer.pkl", parts / "transformer.pkl")


def _copy_a_chunk_of_another_fit(tmp_path, parts):
    shutil.copy(tmp_path / "other.npy.parts" / "chunk-000000.npz", parts / "chunk-000000.npz")


@pytest.mark.parametrize("mix", [_replace_the_transformer, _copy_a_chunk_of_another_fit])
def test_chunks_of_another_fitted_transformer_are_never_merged(tmp_path, monkeypatch, capsys, mix):
    output, parts = tmp_path / "f.npy", tmp_path / "f.npy.parts"
    _interrupted(tmp_path, monkeypatch, capsys, output)
    Counted(monkeypatch, n=1)  # another fit (seed 1) of the same images, one chunk done
    assert extract(tmp_path / "images", tmp_path / "other.npy", *OPTIONS, "--seed", "1") == EXIT_INTERRUPTED
    monkeypatch.undo()
    capsys.readouterr()
    mix(tmp_path, parts)
    assert extract(tmp_path / "images", output, *OPTIONS) == 1
    line = error_line(capsys)
    chunk = os.fspath(parts / "chunk-000000.npz")
    assert f"chunk file {chunk!r} was computed with another fitted transformer than" in line
    assert "pass --restart to discard the partial results and start afresh" in line
    assert not output.exists() and not (parts / LOCK).exists()

    assert extract(tmp_path / "images", output, *OPTIONS, "--restart") == 0
    assert extract(tmp_path / "images", tmp_path / "whole.npy", *OPTIONS) == 0
    assert output.read_bytes() == (tmp_path / "whole.npy").read_bytes()


def test_a_chunk_of_another_fit_is_refused_when_output_is_written(tmp_path, monkeypatch, capsys):
    """A chunk that turns foreign after the resumed run checked it (copied in meanwhile) is found at the merge."""
    from skfungi.cli import extract as extract_module

    output, parts = tmp_path / "f.npy", tmp_path / "f.npy.parts"
    _interrupted(tmp_path, monkeypatch, capsys, output)
    Counted(monkeypatch, n=1)
    assert extract(tmp_path / "images", tmp_path / "other.npy", *OPTIONS, "--seed", "1") == EXIT_INTERRUPTED
    monkeypatch.undo()
    capsys.readouterr()
    transform_pending = extract_module._transform_pending

    def then_copy(*args):
        transform_pending(*args)
        _copy_a_chunk_of_another_fit(tmp_path, parts)

    monkeypatch.setattr(extract_module, "_transform_pending", then_copy)
    assert extract(tmp_path / "images", output, *OPTIONS) == 1
    assert "chunk-000000.npz' was computed with another fitted transformer" in error_line(capsys)
    assert not output.exists()


# -- a bad command leaves nothing behind ------------------------------------------------------


def _nan_npy(tmp_path):
    images = np.full((3, 16, 16, 3), 0.5, dtype=np.float32)
    images[2, 4, 4, 1] = np.nan
    np.save(tmp_path / "nan.npy", images)
    return [tmp_path / "nan.npy"], "holds NaN or infinite values (first at sample 2)"


def _out_of_range_npy(tmp_path):
    np.save(tmp_path / "bright.npy", np.full((2, 16, 16), 1.5, dtype=np.float32))
    return [tmp_path / "bright.npy"], "holds values outside [0, 1] (first at sample 0)"


def _int16_npy(tmp_path):
    np.save(tmp_path / "int16.npy", np.zeros((2, 16, 16), dtype=np.int16))
    return [tmp_path / "int16.npy"], "has dtype int16, whose range the dtype does not record"


def _texts_to_fit_images(tmp_path):
    np.save(tmp_path / "texts.npy", np.asarray(["a text", "another"]))
    return [tmp_path / "images", "--fit-input", tmp_path / "texts.npy"], "--fit-input holds text samples"


def _texts_for_an_image_backbone(tmp_path):
    np.save(tmp_path / "texts.npy", np.asarray(["a text", "another"]))
    return [tmp_path / "texts.npy"], "text"


def _option(*options, message):
    return lambda tmp_path: ([tmp_path / "images", *options], message)


@pytest.mark.parametrize(
    "make",
    [
        _option("--backbone", "nonsense", message="is not understood"),
        _option("--backbone", "timm:no_such_model?pretrained=false", message="no_such_model"),
        _option("--layer", "blocks.9.nothing", message="blocks.9.nothing"),
        _option("--losses", "kl,barlow", message="barlow"),
        _option("--losses", "kl,,dino", message="has an empty name"),
        _option("--device", "nonsense", message="nonsense"),
        _option("--save-transformer", "/no/such/folder/fungi.pkl", message="does not exist"),
        _nan_npy,
        _out_of_range_npy,
        _int16_npy,
        _texts_to_fit_images,
        _texts_for_an_image_backbone,
    ],
)
def test_a_bad_command_writes_nothing_and_the_corrected_one_runs(tmp_path, capsys, make):
    write_images(tmp_path / "images", {"a": 2})
    (input_path, *options), message = make(tmp_path)
    before = files_under(tmp_path)
    output = tmp_path / "f.npy"
    argv = ["extract", str(input_path), "-o", str(output), *map(str, options), "-q"]
    if "--backbone" not in options:
        argv += ["--backbone", "timm:skfungi_cli_test_vit?pretrained=false"]
    assert cli.main(argv) == 1
    assert message in error_line(capsys)
    assert files_under(tmp_path) == before
    assert extract(tmp_path / "images", output, "--losses", "kl") == 0  # no --restart needed


# -- damaged chunks ---------------------------------------------------------------------------


def _copy_chunk(parts):
    shutil.copy(parts / "chunk-000000.npz", parts / "chunk-000001.npz")  # rows 0-1 posing as rows 2-3
    return "holds rows 0-1 (chunk 0), not rows 2-3 (chunk 1)"


def _truncate_chunk(parts):
    path = parts / "chunk-000001.npz"
    path.write_bytes(path.read_bytes()[:-100])
    return "is damaged or truncated"


def _alter_chunk(parts):
    path = parts / "chunk-000001.npz"
    with np.load(path) as stored:
        arrays = dict(stored)
    arrays["features"] = arrays["features"] + np.float32(0.5)
    np.savez(path, **arrays)
    return "fails its checksum"


@pytest.mark.parametrize("damage", [_copy_chunk, _truncate_chunk, _alter_chunk])
def test_a_damaged_chunk_is_named_with_the_command_that_recovers(tmp_path, monkeypatch, capsys, damage):
    output, parts = tmp_path / "f.npy", tmp_path / "f.npy.parts"
    _interrupted(tmp_path, monkeypatch, capsys, output)
    message = damage(parts)  # found on resuming (number, rows), or when OUTPUT is written (checksum)
    assert extract(tmp_path / "images", output, *OPTIONS) == 1
    line = error_line(capsys)
    chunk = os.fspath(parts / "chunk-000001.npz")
    assert message in line and f"delete {chunk!r} and rerun the same command" in line
    assert not output.exists() and not (parts / LOCK).exists()

    (parts / "chunk-000001.npz").unlink()
    assert extract(tmp_path / "images", output, *OPTIONS) == 0
    assert extract(tmp_path / "images", tmp_path / "whole.npy", *OPTIONS) == 0
    assert output.read_bytes() == (tmp_path / "whole.npy").read_bytes()


# -- one extraction per OUTPUT -------------------------------------------------------------------


def test_a_second_extraction_of_the_same_output_is_refused_and_a_dead_ones_lock_taken_over(
    tmp_path, monkeypatch, capsys
):
    output, parts = tmp_path / "f.npy", tmp_path / "f.npy.parts"
    _interrupted(tmp_path, monkeypatch, capsys, output)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = {"pid": holder.pid, "host": os.uname().nodename}
        (parts / LOCK).write_text(json.dumps(lock))
        before = files_under(tmp_path)
        for restart in ((), ("--restart",)):
            assert extract(tmp_path / "images", output, *OPTIONS, *restart) == 1
            line = error_line(capsys)
            assert f"being written by another skfungi extract (process {holder.pid}" in line
            assert files_under(tmp_path) == before
    finally:
        holder.kill()
        holder.wait()
    assert extract(tmp_path / "images", output, *OPTIONS) == 0  # the holder died: its lock is stale
    assert np.load(output).shape == (7, 36)


@pytest.fixture(scope="module")
def slow_extraction(tmp_path_factory):
    """Images for a command that runs a few seconds in another process, and its uninterrupted output."""
    folder = tmp_path_factory.mktemp("slow")
    write_images(folder / "images", {"a": 5, "b": 5})
    arguments = ["--backbone", SUBPROCESS_BACKBONE, "--chunk-size", "2", "--fit-samples", "2"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the other process (see command_process)
    try:
        assert extract(folder / "images", folder / "whole.parquet", *arguments, backbone=None) == 0
    finally:
        torch.set_num_threads(threads)
    return folder / "images", arguments, (folder / "whole.parquet").read_bytes()


def _wait_for(path, process, seconds=300):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_two_running_extractions_of_one_output(tmp_path, capsys, slow_extraction):
    images, arguments, whole = slow_extraction
    output, parts = tmp_path / "f.parquet", tmp_path / "f.parquet.parts"
    first = command_process("extract", images, "-o", output, *arguments, "-q")
    _wait_for(parts / "chunk-000000.npz", first)
    assert extract(images, output, *arguments, backbone=None) == 1
    assert f"(process {first.pid} on" in error_line(capsys)
    assert first.wait(timeout=600) == 0, first.communicate()
    assert output.read_bytes() == whole


@pytest.mark.parametrize(
    ("signal_number", "status"), [(signal.SIGTERM, EXIT_TERMINATED), (signal.SIGINT, EXIT_INTERRUPTED)]
)
def test_a_signal_mid_chunk_stops_cleanly_and_the_rerun_gives_the_same_bytes(
    tmp_path, capsys, slow_extraction, signal_number, status
):
    images, arguments, whole = slow_extraction
    output, parts = tmp_path / "f.parquet", tmp_path / "f.parquet.parts"
    process = command_process("extract", images, "-o", output, *arguments)
    _wait_for(parts / "chunk-000000.npz", process)
    process.send_signal(signal_number)
    _, err = process.communicate(timeout=600)
    assert process.returncode == status, err
    assert "interrupted; rerun the same command to continue where it stopped." in err
    assert not output.exists() and not (parts / LOCK).exists()
    done = sorted(p.name for p in parts.glob("chunk-*.npz"))
    assert 1 <= len(done) < 5 and not [p for p in parts.iterdir() if p.name.startswith(".")]

    capsys.readouterr()
    assert cli.main(["extract", str(images), "-o", str(output), *arguments]) == 0
    err = capsys.readouterr().err
    assert f"{len(done)} of 5 chunks already done, with the transformer fitted then" in err
    assert "fitting on" not in err
    assert output.read_bytes() == whole


# -- a full disk -------------------------------------------------------------------------------------


def test_a_full_disk_while_saving_a_chunk_keeps_the_finished_ones(tmp_path, monkeypatch, capsys):
    write_images(tmp_path / "images", {"a": 4, "b": 3})
    output, parts = tmp_path / "f.npy", tmp_path / "f.npy.parts"
    savez, calls = np.savez, []

    def full_after_one_chunk(file, **arrays):
        calls.append(1)
        if len(calls) > 1:
            file.write(b"PK partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        savez(file, **arrays)

    monkeypatch.setattr(chunks_module.np, "savez", full_after_one_chunk)
    assert extract(tmp_path / "images", output, *OPTIONS) == 1
    line = error_line(capsys)
    chunk = os.fspath(parts / "chunk-000001.npz")
    assert f"cannot write {chunk!r}: No space left on device; free some space and rerun the same command" in line
    assert sorted(p.name for p in parts.iterdir()) == ["chunk-000000.npz", MANIFEST, "transformer.pkl"]
    assert not output.exists()

    monkeypatch.undo()
    counted = Counted(monkeypatch)
    assert extract(tmp_path / "images", output, *OPTIONS) == 0
    assert (counted.fits, counted.transforms) == (0, 3)
    monkeypatch.undo()
    assert extract(tmp_path / "images", tmp_path / "whole.npy", *OPTIONS) == 0
    assert output.read_bytes() == (tmp_path / "whole.npy").read_bytes()


def test_a_full_disk_while_writing_output_leaves_no_output_and_keeps_the_chunks(tmp_path, monkeypatch, capsys):
    write_images(tmp_path / "images", {"a": 3})
    output = tmp_path / "f.npy"

    def full_disk(file, chunks, *_):
        file.write(b"\x93NUMPY partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setitem(WRITERS, ".npy", full_disk)
    assert extract(tmp_path / "images", output, "--losses", "kl") == 1
    assert "No space left on device; free some space and rerun the same command" in error_line(capsys)
    assert files_under(tmp_path)[:1] == ["f.npy.parts"] and not output.exists()
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]

    monkeypatch.undo()
    counted = Counted(monkeypatch)
    assert extract(tmp_path / "images", output, "--losses", " kl") == 0  # the same loss list, spelt otherwise
    assert (counted.fits, counted.transforms) == (0, 0) and np.load(output).shape == (3, 24)
