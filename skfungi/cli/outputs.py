"""The OUTPUT formats of ``skfungi extract``, written atomically from the finished chunks.

``.npy`` and ``.parquet`` are streamed: one chunk of features (``.npy``) or
one row group of about ``ROW_GROUP_BYTES`` (``.parquet``) is in memory at a
time, so an output larger than memory can be written. ``.npz`` (a zip of
whole arrays) gathers the features in memory first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from .chunks import atomic_write

__all__ = ["ROW_GROUP_BYTES", "WRITERS", "write_features"]

ROW_GROUP_BYTES = 64 * 2**20


def write_features(
    path: Path, chunks: Callable[[], Iterator[np.ndarray]], feature_names: list[str], samples: np.ndarray, labels
) -> None:
    """Write the features of every chunk (``chunks()`` yields them in order) to ``path``, by its extension.

    ``samples`` and ``labels`` (or None) hold one entry per feature row.
    """
    write = WRITERS[Path(path).suffix.lower()]
    atomic_write(path, lambda file: write(file, chunks(), feature_names, samples, labels))


def _write_npy(file, chunks: Iterable[np.ndarray], feature_names, samples, labels) -> None:
    shape = (len(samples), len(feature_names))
    np.lib.format.write_array_header_1_0(
        file, {"descr": np.dtype(np.float32).str, "fortran_order": False, "shape": shape}
    )
    written = 0
    for features in chunks:
        file.write(np.ascontiguousarray(features, dtype=np.float32).tobytes())
        written += len(features)
    _check_count(written, shape[0])


def _write_npz(file, chunks: Iterable[np.ndarray], feature_names, samples, labels) -> None:
    arrays = {
        "features": np.concatenate(list(chunks)).astype(np.float32, copy=False),
        "feature_names": np.asarray(feature_names),
        "samples": samples,
    }
    _check_count(len(arrays["features"]), len(samples))
    if labels is not None:
        arrays["labels"] = labels
    np.savez(file, **arrays)


def _write_parquet(file, chunks: Iterable[np.ndarray], feature_names, samples, labels) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = [("sample", samples)] + ([] if labels is None else [("label", labels)])
    schema = pa.schema([(name, pa.string()) for name, _ in text] + [(name, pa.float32()) for name in feature_names])
    rows_per_group = max(1, ROW_GROUP_BYTES // (4 * max(1, len(feature_names))))
    written = 0
    writer = pq.ParquetWriter(pa.PythonFile(file, mode="w"), schema)
    for block in _row_groups(chunks, rows_per_group):
        stop = written + len(block)
        columns = [pa.array(values[written:stop].tolist(), pa.string()) for _, values in text]
        columns += [pa.array(column) for column in np.ascontiguousarray(block.T, dtype=np.float32)]
        writer.write_table(pa.Table.from_arrays(columns, schema=schema))
        written = stop
    writer.close()
    _check_count(written, len(samples))


def _row_groups(chunks: Iterable[np.ndarray], rows: int) -> Iterator[np.ndarray]:
    """Consecutive chunks joined into blocks of at least ``rows`` rows (the last may be shorter)."""
    pending, count = [], 0
    for features in chunks:
        pending.append(features)
        count += len(features)
        if count >= rows:
            yield np.concatenate(pending)
            pending, count = [], 0
    if count:
        yield np.concatenate(pending)


def _check_count(written: int, expected: int) -> None:
    if written != expected:
        raise RuntimeError(f"the chunks hold {written} feature rows for {expected} samples; rerun with --restart.")


WRITERS = {".npy": _write_npy, ".npz": _write_npz, ".parquet": _write_parquet}
