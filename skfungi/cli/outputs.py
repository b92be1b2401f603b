"""The OUTPUT formats of ``skfungi extract``, written atomically from the finished chunks, one chunk at a time.

Every format is streamed: one chunk of features (``.npy``, ``.npz``) or one
Parquet row group of about ``ROW_GROUP_BYTES`` is in memory at a time, so an
output larger than memory can be written.

OUTPUT may also be a folder (a path ending with ``/``, an existing folder, or
a name without an extension): a Parquet dataset, one ``part-NNNNNN.parquet``
file of about ``PART_BYTES`` of features per block of consecutive rows, named
in row order, which pandas, pyarrow, Dask, polars and DuckDB read as one table.
It is written in a temporary folder beside it and renamed when complete.

Parquet has two layouts. ``"blocks"`` (the default) holds one
fixed-size-list ``float32`` column per block of features (``embedding``,
``kl``, ``dino``, ``simclr``, named by the prefixes of the feature names), the
common layout for embeddings, which pandas, pyarrow, polars and DuckDB read as
one vector per row. ``"wide"`` holds one ``float32`` column per feature
(``embedding0``, ``embedding1``, ...).

The sample names and labels are columns of every format but ``.npy``: strings
(a fixed-width unicode array), numbers or booleans, which ``.npz`` stores
without pickling (``np.load(..., allow_pickle=False)`` reads it) and Parquet
types as they are. :func:`check_storable` refuses anything else before the
command does any work.
"""

from __future__ import annotations

import os
import re
import shutil
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from .chunks import atomic_write
from .errors import CommandError

__all__ = [
    "LAYOUTS",
    "PART_BYTES",
    "ROW_GROUP_BYTES",
    "WRITERS",
    "check_replaceable_dataset",
    "check_storable",
    "feature_blocks",
    "is_dataset",
    "write_dataset",
    "write_features",
]

ROW_GROUP_BYTES = 64 * 2**20
PART_BYTES = 128 * 2**20  # features per part file of a Parquet dataset: large enough for readers, two row groups
PART_NAME = re.compile(r"part-\d{6}\.parquet")
LAYOUTS = ("blocks", "wide")
# dtype kinds of the sample names and labels that .npz (without pickle) and Parquet hold: bool, ints, floats, str
STORABLE_KINDS = "biufU"


def write_features(
    path: Path,
    chunks: Callable[[], Iterator[np.ndarray]],
    feature_names: list[str],
    samples: np.ndarray,
    labels,
    layout: str = "blocks",
) -> None:
    """Write the features of every chunk (``chunks()`` yields them in order) to ``path``, by its extension.

    ``samples`` and ``labels`` (or None) hold one entry per feature row;
    ``layout`` (one of ``LAYOUTS``) applies to Parquet.
    """
    write = WRITERS[Path(path).suffix.lower()]
    atomic_write(path, lambda file: write(file, chunks(), feature_names, samples, labels, layout))


def is_dataset(output: str) -> bool:
    """Whether OUTPUT names a Parquet dataset folder: it ends with a separator, is a folder, or has no extension."""
    return output.endswith(("/", os.sep)) or Path(output).is_dir() or Path(output).suffix == ""


def check_replaceable_dataset(folder: Path) -> None:
    """Refuse to replace (``--overwrite``) a folder that holds anything but the part files of a dataset."""
    others = [entry.name for entry in Path(folder).iterdir() if not PART_NAME.fullmatch(entry.name)]
    if others:
        raise CommandError(
            f"OUTPUT {os.fspath(folder)!r} is a folder holding other files than a Parquet dataset's part files "
            f"(e.g. {sorted(others)[0]!r}); --overwrite replaces only a dataset written by skfungi extract: "
            "choose another OUTPUT."
        )


def write_dataset(
    folder: Path,
    chunks: Callable[[], Iterator[np.ndarray]],
    feature_names: list[str],
    samples: np.ndarray,
    labels,
    layout: str = "blocks",
) -> None:
    """Write the features of every chunk as a Parquet dataset in ``folder``: ``part-NNNNNN.parquet`` files of
    about ``PART_BYTES`` each, in row order, with the ``sample`` (and ``label``) column of their rows.

    The parts are written in a temporary folder beside ``folder``, which is renamed to ``folder`` when every
    part is complete (an existing ``folder``, checked by :func:`check_replaceable_dataset`, is replaced then).
    """
    folder = Path(folder)
    temporary = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir()
    try:
        rows_per_part = max(1, PART_BYTES // (4 * max(1, len(feature_names))))
        written = 0
        for part, block in enumerate(_row_groups(chunks(), rows_per_part)):
            stop = written + len(block)
            selected = [None if values is None else values[written:stop] for values in (samples, labels)]
            atomic_write(
                temporary / f"part-{part:06d}.parquet",
                lambda file, block=block, selected=selected: _write_parquet(
                    file, [block], feature_names, *selected, layout
                ),
            )
            written = stop
        _check_count(written, len(samples))
        if folder.exists():  # --overwrite: the earlier dataset goes once the new one is complete
            discarded = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.rename(folder, discarded)
            shutil.rmtree(discarded)
        os.rename(temporary, folder)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)


def check_storable(path: Path, samples: np.ndarray, labels: np.ndarray | None) -> None:
    """Raise a CommandError if the format of ``path`` cannot hold ``samples`` or ``labels`` (None: no labels)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":  # the features only
        return
    for role, values in (("sample names", samples), ("labels", labels)):
        if values is not None and values.dtype.kind not in STORABLE_KINDS:
            raise CommandError(
                f"OUTPUT {os.fspath(path)!r} cannot hold {role} of dtype {values.dtype}: "
                f"{suffix or 'a Parquet dataset'} holds strings, numbers or booleans."
            )


def feature_blocks(feature_names: list[str]) -> list[tuple[str, int, int]]:
    """``(block name, first column, stop column)`` of each run of names ``<block>0, <block>1, ...``.

    >>> feature_blocks(["embedding0", "embedding1", "kl0", "dino_views0"])
    [('embedding', 0, 2), ('kl', 2, 3), ('dino_views', 3, 4)]
    """
    blocks = []
    for column, name in enumerate(feature_names):
        match = re.fullmatch(r"(.*?)(\d+)", name)
        if match is None:
            raise ValueError(f"feature name {name!r} does not end in its index within its block.")
        prefix, index = match.group(1), int(match.group(2))
        if blocks and blocks[-1][0] == prefix and index == column - blocks[-1][1]:
            blocks[-1][2] = column + 1
        elif index == 0:
            blocks.append([prefix, column, column + 1])
        else:
            raise ValueError(f"feature name {name!r} does not follow its block's previous feature.")
    return [tuple(block) for block in blocks]


def _write_npy(file, chunks: Iterable[np.ndarray], feature_names, samples, labels, layout=None) -> None:
    shape = (len(samples), len(feature_names))
    np.lib.format.write_array_header_1_0(
        file, {"descr": np.dtype(np.float32).str, "fortran_order": False, "shape": shape}
    )
    written = 0
    for features in chunks:
        file.write(np.ascontiguousarray(features, dtype=np.float32).tobytes())
        written += len(features)
    _check_count(written, shape[0])


def _write_npz(file, chunks: Iterable[np.ndarray], feature_names, samples, labels, layout=None) -> None:
    # np.savez's layout (a zip of .npy members, stored uncompressed), with the features streamed into theirs
    with zipfile.ZipFile(file, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        with archive.open("features.npy", mode="w", force_zip64=True) as member:
            _write_npy(member, chunks, feature_names, samples, labels)
        arrays = {"feature_names": np.asarray(feature_names), "samples": samples}
        if labels is not None:
            arrays["labels"] = labels
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)


def _write_parquet(file, chunks: Iterable[np.ndarray], feature_names, samples, labels, layout="blocks") -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    described = [
        (name, values, _arrow_type(values))
        for name, values in (("sample", samples), ("label", labels))
        if values is not None
    ]
    if layout == "wide":
        columns = [(name, pa.float32(), start, start + 1) for start, name in enumerate(feature_names)]
    else:
        columns = [
            (name, pa.list_(pa.float32(), stop - start), start, stop)
            for name, start, stop in feature_blocks(feature_names)
        ]
    schema = pa.schema([(name, kind) for name, _, kind in described] + [(name, kind) for name, kind, _, _ in columns])
    rows_per_group = max(1, ROW_GROUP_BYTES // (4 * max(1, len(feature_names))))
    written = 0
    writer = pq.ParquetWriter(pa.PythonFile(file, mode="w"), schema)
    for block in _row_groups(chunks, rows_per_group):
        stop = written + len(block)
        arrays = [pa.array(values[written:stop], kind) for _, values, kind in described]
        for _, _, first, last in columns:
            values = np.ascontiguousarray(block[:, first:last], dtype=np.float32)
            arrays.append(
                pa.array(values[:, 0])
                if layout == "wide"
                else pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), last - first)
            )
        writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
        written = stop
    writer.close()
    _check_count(written, len(samples))


def _arrow_type(values: np.ndarray):
    """The Arrow type of a column of sample names or labels (see :func:`check_storable`)."""
    import pyarrow as pa

    return pa.string() if values.dtype.kind == "U" else pa.from_numpy_dtype(values.dtype)


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
