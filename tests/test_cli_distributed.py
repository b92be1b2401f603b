"""``skfungi extract --workers N`` / ``--scheduler ADDRESS``: the same features as one process, the transformer
shipped once per worker, workers killed mid-run, resumption with and without a cluster, Parquet dataset outputs."""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from cli_support import error_line, extract, write_images

from skfungi import FungiTransformer
from skfungi.cli import distributed as distributed_module
from skfungi.cli import outputs
from skfungi.cli.chunks import ChunkStore
from skfungi.cli.main import EXIT_INTERRUPTED

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# 9 images in 5 chunks of 2; single-process runs at one torch thread, as each worker runs
OPTIONS = ("--losses", "kl,simclr", "--chunk-size", "2", "--fit-samples", "4")


@pytest.fixture(scope="module")
def client():
    """A running cluster of 2 worker processes, 1 thread each, for ``--scheduler``."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers run this module's functions
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    )
    with cluster, distributed.Client(cluster) as client:
        yield client
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs") / "images"
    write_images(folder, {"a": 5, "b": 4})
    return folder


@pytest.fixture(scope="module")
def single(images, tmp_path_factory):
    """The single-process extraction (one torch thread) as a Parquet file."""
    output = tmp_path_factory.mktemp("single") / "features.parquet"
    assert extract(images, output, *OPTIONS, "--threads", "1") == 0
    return read_features(output)


def read_features(path) -> tuple[list, list, np.ndarray]:
    """Sample ids, labels and the feature matrix of a Parquet file or dataset folder."""
    table = pq.read_table(path).to_pandas()
    blocks = [np.stack(table[column]) for column in table.columns if column not in ("sample", "label")]
    return table["sample"].tolist(), table["label"].tolist(), np.hstack(blocks)


def assert_same_features(found, expected) -> None:
    assert found[0] == expected[0] and found[1] == expected[1]  # ids and labels, in the same order
    np.testing.assert_array_equal(found[2], expected[2])  # bit for bit


class WrittenChunks:
    """Records the chunks this process (the client) writes to OUTPUT.parts/."""

    def __init__(self, monkeypatch, stop_after: int | None = None):
        self.chunks = []
        original = ChunkStore.write_chunk

        def write_chunk(store, chunk, *rest):
            if stop_after is not None and len(self.chunks) == stop_after:
                raise KeyboardInterrupt
            original(store, chunk, *rest)
            self.chunks.append(chunk)

        monkeypatch.setattr(ChunkStore, "write_chunk", write_chunk)


# -- the same features as one process ----------------------------------------------------------------------


def test_workers_write_the_features_of_one_process(images, single, tmp_path):
    """The issue's check: ``--workers 2`` and the same command without it write the same ids, order and values."""
    assert extract(images, tmp_path / "cluster/", *OPTIONS, "--workers", "2") == 0
    assert extract(images, tmp_path / "alone/", *OPTIONS, "--threads", "1") == 0
    assert sorted(os.listdir(tmp_path)) == ["alone", "cluster"]  # no partial results left behind
    assert_same_features(read_features(tmp_path / "cluster"), read_features(tmp_path / "alone"))
    assert_same_features(read_features(tmp_path / "cluster"), single)


def test_the_transformer_is_fitted_once_and_unpickled_once_per_worker(images, single, client, tmp_path, monkeypatch):
    fits, pickles = [], []
    fit, getstate = FungiTransformer.fit, FungiTransformer.__getstate__
    monkeypatch.setattr(FungiTransformer, "fit", lambda self, *a, **k: fits.append(1) or fit(self, *a, **k))
    monkeypatch.setattr(FungiTransformer, "__getstate__", lambda self: pickles.append(1) or getstate(self))
    before = client.run(distributed_module.shipped_copies)
    address = client.scheduler.address
    assert extract(images, tmp_path / "f.parquet", *OPTIONS, "--scheduler", address) == 0
    after = client.run(distributed_module.shipped_copies)

    assert len(fits) == 1  # on the client
    assert len(pickles) == 2  # OUTPUT.parts/transformer.pkl, and once for every worker (the plugin)
    unpickled = [sum(after[worker].values()) - sum(before[worker].values()) for worker in after]
    assert unpickled == [1, 1]  # each worker unpickled it once, for all its tasks
    assert_same_features(read_features(tmp_path / "f.parquet"), single)
    assert client.run(lambda: len(distributed_module._TRANSFORMERS)) == dict.fromkeys(after, 0)  # removed at the end


# -- workers that die ----------------------------------------------------------------------------------------


def kill_the_worker_at_call(log: str, call: int) -> None:
    """Run on every worker: the ``call``-th transform of the cluster (counted in ``log``) kills its worker process."""
    original = FungiTransformer.transform
    FungiTransformer.transform_before_the_test = original

    def transform(self, X):
        with open(log, "a") as file:
            file.write(f"{os.getpid()}\n")
        with open(log) as file:
            if len(file.read().split()) == call:
                os.kill(os.getpid(), signal.SIGKILL)
        return original(self, X)

    FungiTransformer.transform = transform


def restore_transform() -> None:
    """Undo :func:`kill_the_worker_at_call` (a worker restarted since never had it)."""
    FungiTransformer.transform = getattr(FungiTransformer, "transform_before_the_test", FungiTransformer.transform)


def test_a_worker_killed_mid_run_is_replaced_and_the_finished_chunks_are_kept(
    images, single, client, tmp_path, monkeypatch
):
    log = tmp_path / "transforms.log"
    client.run(kill_the_worker_at_call, os.fspath(log), 3)
    written = WrittenChunks(monkeypatch)
    try:
        assert extract(images, tmp_path / "f/", *OPTIONS, "--scheduler", client.scheduler.address) == 0
    finally:
        client.run(restore_transform)
    pids = log.read_text().split()
    assert len(pids) >= 6  # 5 chunks, the third one again on a live worker
    assert sorted(written.chunks) == [0, 1, 2, 3, 4]  # every chunk written once: none finished was redone
    assert_same_features(read_features(tmp_path / "f"), single)
    client.wait_for_workers(2)


def test_a_run_stopped_by_dying_workers_completes_when_rerun(images, single, client, tmp_path, monkeypatch, capsys):
    allowed_failures = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
    client.run_on_scheduler(set_allowed_failures, 0)  # the first death of a worker fails its task
    log = tmp_path / "transforms.log"
    client.run(kill_the_worker_at_call, os.fspath(log), 3)
    output = tmp_path / "f.parquet"
    try:
        written = WrittenChunks(monkeypatch)
        assert extract(images, output, *OPTIONS, "--scheduler", client.scheduler.address) == 1
        line = error_line(capsys)
        assert "died" in line and "rerun the same command to continue" in line
        assert not output.exists() and 1 <= len(written.chunks) < 5
        monkeypatch.undo()
        client.wait_for_workers(2)

        rerun = WrittenChunks(monkeypatch)
        assert extract(images, output, *OPTIONS, "--workers", "2") == 0
    finally:
        client.run(restore_transform)
        client.run_on_scheduler(set_allowed_failures, allowed_failures)
    assert sorted(rerun.chunks + written.chunks) == [0, 1, 2, 3, 4]  # only the missing chunks were computed
    assert_same_features(read_features(output), single)


def set_allowed_failures(value, dask_scheduler=None):
    dask_scheduler.allowed_failures = value


def test_a_single_process_run_resumes_on_a_cluster_and_back(images, client, tmp_path, monkeypatch, capsys):
    output = tmp_path / "f.npz"
    WrittenChunks(monkeypatch, stop_after=2)
    assert extract(images, output, *OPTIONS, "--threads", "1") == EXIT_INTERRUPTED
    monkeypatch.undo()
    WrittenChunks(monkeypatch, stop_after=1)
    assert extract(images, output, *OPTIONS, "--scheduler", client.scheduler.address) == EXIT_INTERRUPTED
    monkeypatch.undo()
    fits = []
    fit = FungiTransformer.fit
    monkeypatch.setattr(FungiTransformer, "fit", lambda self, *a, **k: fits.append(1) or fit(self, *a, **k))
    rest = WrittenChunks(monkeypatch)
    assert extract(images, output, *OPTIONS, "--threads", "1") == 0
    assert (len(fits), len(rest.chunks)) == (0, 2)
    monkeypatch.undo()
    assert extract(images, tmp_path / "whole.npz", *OPTIONS, "--threads", "1") == 0
    assert output.read_bytes() == (tmp_path / "whole.npz").read_bytes()


# -- options -------------------------------------------------------------------------------------------------


def test_without_dask_the_cluster_options_say_how_to_install_it(images, tmp_path, monkeypatch, capsys):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "distributed" else find_spec(name, *a)
    )
    for option in (("--workers", "2"), ("--scheduler", "tcp://127.0.0.1:8786")):
        assert extract(images, tmp_path / "f/", *OPTIONS, *option) == 1
        line = error_line(capsys)
        assert f"{option[0]} runs the extraction on a Dask cluster" in line
        assert "pip install 'skfungi[distributed]'" in line
    assert os.listdir(tmp_path) == []


def test_workers_and_scheduler_exclude_each_other(images, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        extract(images, tmp_path / "f/", "--workers", "2", "--scheduler", "tcp://127.0.0.1:8786")
    assert exit_.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


# -- the Parquet dataset OUTPUT ------------------------------------------------------------------------------


def test_a_folder_output_is_a_dataset_every_reader_reads_in_order(images, tmp_path, monkeypatch):
    import dask.dataframe as dd
    import duckdb
    import polars as pl
    import pyarrow.dataset as ds

    monkeypatch.setattr(outputs, "PART_BYTES", 3 * 4 * 36)  # at least 3 rows of 36 features: chunks 2+2, 2+2, 1
    assert extract(images, tmp_path / "features", *OPTIONS) == 0
    assert sorted(os.listdir(tmp_path / "features")) == [f"part-00000{i}.parquet" for i in range(3)]
    assert extract(images, tmp_path / "features.npz", *OPTIONS) == 0
    with np.load(tmp_path / "features.npz", allow_pickle=False) as stored:
        samples, labels, features = stored["samples"].tolist(), stored["labels"].tolist(), stored["features"]

    folder = os.fspath(tmp_path / "features")
    tables = {
        "pandas": pd.read_parquet(folder),
        "dask": dd.read_parquet(folder).compute(),
        "pyarrow": ds.dataset(folder, format="parquet").to_table().to_pandas(),
        "polars": pl.read_parquet(f"{folder}/*.parquet").to_pandas(),
        "duckdb": duckdb.sql(f"SELECT * FROM read_parquet('{folder}/*.parquet')").df(),
    }
    for reader, table in tables.items():
        assert table["sample"].tolist() == samples, reader
        assert table["label"].tolist() == labels, reader
        found = np.hstack([np.stack(table[block].to_numpy()) for block in ("embedding", "kl", "simclr")])
        np.testing.assert_array_equal(found, features, err_msg=reader)


def test_a_dataset_output_is_replaced_only_with_overwrite_and_only_if_it_is_one(images, tmp_path, capsys):
    output = tmp_path / "features"
    assert extract(images, output, *OPTIONS) == 0
    assert extract(images, output, *OPTIONS) == 1
    assert "exists; pass --overwrite" in error_line(capsys)
    assert extract(images, output, *OPTIONS, "--overwrite") == 0
    (output / "notes.txt").write_text("mine")
    assert extract(images, output, *OPTIONS, "--overwrite") == 1
    assert "holding other files than a Parquet dataset's part files (e.g. 'notes.txt')" in error_line(capsys)
    assert (output / "notes.txt").read_text() == "mine"
    assert extract(images, tmp_path / "features.v2", *OPTIONS) == 1
    assert "or name a folder (a Parquet dataset" in error_line(capsys)
