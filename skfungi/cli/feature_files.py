"""The feature files ``skfungi index`` and ``skfungi search`` read and write, batch by batch: the rows of a Parquet
file or folder, of a ``.npy`` array, and the ids of the indexed rows. Nothing heavy is imported at the top."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import CommandError

__all__ = ["NOT_FEATURES", "IdWriter", "NumpyFeatures", "ParquetFeatures"]

NOT_FEATURES = ("sample", "label")  # columns of skfungi extract's outputs that are not features


class IdWriter:
    """The ids of the indexed rows, appended batch by batch to a Parquet file (one column, ``sample``)."""

    def __init__(self, path: Path, kind):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.schema = pa.schema([("sample", kind)])
        self.writer = pq.ParquetWriter(os.fspath(path), self.schema)

    def write(self, ids) -> None:
        import pyarrow as pa

        self.writer.write_table(pa.Table.from_arrays([pa.array(ids, self.schema.field(0).type)], schema=self.schema))

    def __enter__(self) -> IdWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.writer.close()


class ParquetFeatures:
    """The feature rows of a Parquet file or folder of files (read in path order), batch by batch.

    Parameters
    ----------
    path : str
        A ``.parquet`` file, or a folder whose ``*.parquet`` files (hidden and
        ``_`` files left out) are read in sorted order of relative path, as
        pandas, pyarrow and Dask read a dataset.
    columns : str or None
        Comma-separated feature columns; None: every float column and list of
        floats but ``id_column`` and ``label``.
    id_column : str
        Column of sample ids; row numbers when FEATURES has no such column.
    """

    def __init__(self, path, columns: str | None, id_column: str | None):
        self.files = _parquet_files(Path(path))
        schema = _parquet_file(self.files[0]).schema_arrow
        self.n_rows = sum(_parquet_file(file).metadata.num_rows for file in self.files)
        if id_column is not None and id_column not in schema.names:
            raise CommandError(
                f"--id-column {id_column!r} is not a column of {path!r} (its columns: {', '.join(schema.names)})."
            )
        id_column = "sample" if id_column is None else id_column
        self.id_column = id_column if id_column in schema.names else None
        if columns is None:
            chosen = [field.name for field in schema if field.name not in (id_column, *NOT_FEATURES)]
            chosen = [name for name in chosen if _width(schema.field(name)) is not None]
        else:
            chosen = [name.strip() for name in columns.split(",")]
        for name in chosen:
            if name not in schema.names:
                raise CommandError(f"{path!r} has no column {name!r} (its columns: {', '.join(schema.names)}).")
            if _width(schema.field(name)) is None:
                raise CommandError(
                    f"column {name!r} of {path!r} holds {schema.field(name).type}, not floats or a fixed-size list "
                    "of floats."
                )
        if not chosen:
            raise CommandError(f"{path!r} has no float column or fixed-size list of floats to index; name --columns.")
        self.columns = chosen
        self.widths = [_width(schema.field(name)) for name in chosen]
        self.width = sum(self.widths)
        self._schema = schema

    def id_type(self):
        import pyarrow as pa

        return pa.int64() if self.id_column is None else self._schema.field(self.id_column).type

    def batches(self, batch_size: int):
        """``(features, ids)`` of each batch of at most ``batch_size`` rows: a float32 array, an Arrow array."""
        import numpy as np
        import pyarrow as pa

        start = 0
        wanted = self.columns + ([] if self.id_column is None else [self.id_column])
        for file in self.files:
            parquet = _parquet_file(file)
            if parquet.schema_arrow.names != self._schema.names:
                raise CommandError(f"{os.fspath(file)!r} does not have the columns of {os.fspath(self.files[0])!r}.")
            row = 0  # of this file
            for batch in parquet.iter_batches(batch_size=batch_size, columns=wanted):
                blocks = [_matrix(batch.column(name), name, file) for name in self.columns]
                with np.errstate(over="ignore"):
                    features = np.ascontiguousarray(np.hstack(blocks), dtype=np.float32)
                n = len(features)
                ids = pa.array(np.arange(start, start + n)) if self.id_column is None else batch.column(self.id_column)
                _check_finite(features, ids, row, file)
                start, row = start + n, row + n
                yield features, ids


def _parquet_file(path: Path):
    """``pq.ParquetFile(path)``; a file that is not Parquet is named in the error (pyarrow's message does not)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as error:
        raise CommandError(f"cannot read {os.fspath(path)!r} as Parquet: {error}") from error


def _check_finite(features, ids, row: int, file: Path) -> None:
    """Refuse a row that is not finite in float32 (NaN, infinite, or beyond float32's range), or so long that
    hnswlib's float32 distances overflow, naming it by its row in ``file`` and its id (the index's own check
    would name its row within the batch)."""
    import numpy as np

    from ..neighbors._queries import MAX_NORM

    if np.isfinite(features.sum(dtype=np.float64)):
        norms = np.sqrt(np.square(features, dtype=np.float64).sum(axis=1))
        if norms.max(initial=0.0) <= MAX_NORM:
            return
        bad = int(np.argmax(norms > MAX_NORM))
        problem = f"has norm {norms[bad]:.3g}, beyond {MAX_NORM:.2g}, where hnswlib's float32 distances overflow"
        remedy = "rescale the rows first"
    else:
        bad = int(np.flatnonzero(~np.isfinite(features).all(axis=1))[0])
        problem = "has a NaN, infinite or beyond-float32 value (above 3.4e38)"
        remedy = "the index needs finite float32 vectors: drop or fix such rows first"
    identifier = ids[bad].as_py() if hasattr(ids[bad], "as_py") else int(ids[bad])
    raise CommandError(f"row {row + bad} of {os.fspath(file)!r} (id {identifier!r}) {problem}; {remedy}.")


def _parquet_files(path: Path) -> list[Path]:
    if not path.exists():
        raise CommandError(f"{os.fspath(path)!r} does not exist.")
    if path.is_file():
        return [path]
    files = sorted(
        (file for file in path.rglob("*.parquet") if not any(part.startswith((".", "_")) for part in file.parts)),
        key=lambda file: file.relative_to(path).as_posix(),
    )
    if not files:
        raise CommandError(f"{os.fspath(path)!r} holds no .parquet file.")
    return files


def _width(field) -> int | None:
    """Columns a field gives the feature matrix: 1 for a float, the size of a fixed-size list of floats."""
    import pyarrow as pa

    kind = field.type
    if pa.types.is_floating(kind):
        return 1
    if pa.types.is_fixed_size_list(kind) and pa.types.is_floating(kind.value_type):
        return kind.list_size
    return None


def _matrix(column, name: str, file: Path):
    """A column of a record batch as a 2-D float array, refusing missing values."""
    import pyarrow as pa

    if column.null_count or (pa.types.is_fixed_size_list(column.type) and column.flatten().null_count):
        raise CommandError(f"column {name!r} of {os.fspath(file)!r} has missing values; the index needs every one.")
    if pa.types.is_fixed_size_list(column.type):
        return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), column.type.list_size)
    return column.to_numpy(zero_copy_only=False).reshape(-1, 1)


class NumpyFeatures:
    """Query features in a ``.npy`` array of shape ``(n, width)``, memory-mapped; ids are row numbers."""

    def __init__(self, path: str, width: int):
        import numpy as np

        try:
            self.array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as error:
            raise CommandError(f"cannot read {path!r} as a .npy array: {error}") from error
        if self.array.ndim != 2 or self.array.shape[1] != width or self.array.dtype.kind != "f":
            raise CommandError(
                f"{path!r} holds a {self.array.dtype} array of shape {self.array.shape}; the index takes float rows "
                f"of {width} features."
            )
        self.n_rows, self.path = len(self.array), path

    def id_type(self):
        import pyarrow as pa

        return pa.int64()

    def batches(self, batch_size: int):
        import numpy as np

        for start in range(0, self.n_rows, batch_size):
            with np.errstate(over="ignore"):
                rows = np.asarray(self.array[start : start + batch_size], dtype=np.float32)
            ids = np.arange(start, start + len(rows))
            _check_finite(rows, ids, start, Path(self.path))
            yield rows, ids
