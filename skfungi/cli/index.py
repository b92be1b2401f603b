"""``skfungi index`` and ``skfungi search``: an HNSW index of the features in a Parquet file or dataset, built
batch by batch, and the nearest indexed samples of query features.

``skfungi index FEATURES -o INDEX`` reads FEATURES (a ``.parquet`` file or a
folder of them, such as ``skfungi extract`` writes) ``--batch-size`` rows at
a time and adds them to an :class:`~skfungi.HNSWTransformer`: memory holds the
index and one batch (one Parquet row group at most), never the whole data.
INDEX is a folder:

- ``hnsw.bin``, ``hnsw.json``: the index and its parameters, as
  :meth:`HNSWTransformer.save <skfungi.HNSWTransformer.save>` writes them
  (``HNSWTransformer.load(INDEX)`` reads them back);
- ``ids.parquet``: the sample id of each indexed row, in index order (row
  ``i`` of the index is the ``i``-th row of FEATURES);
- ``columns.json``: the feature columns indexed, in order, which ``search``
  reads from its queries.

``skfungi search INDEX QUERIES -k 10 -o NEIGHBOURS.parquet`` writes, per
query, its id, the ids of its ``k`` nearest indexed samples (nearest first)
and their distances.

This module imports nothing heavy at its top: the parser (``skfungi --help``)
builds its options from it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
from pathlib import Path

from . import options
from .arguments import positive_int
from .errors import CommandError
from .feature_files import IdWriter, NumpyFeatures, ParquetFeatures

__all__ = ["add_index_commands", "index_command", "search_command"]

logger = logging.getLogger(__name__)

IDS_FILE, COLUMNS_FILE = "ids.parquet", "columns.json"
INDEX_FILES = {"hnsw.bin", "hnsw.json", IDS_FILE, COLUMNS_FILE}


def add_index_commands(commands) -> None:
    """Add the ``index`` and ``search`` commands to the ``skfungi`` sub-parsers ``commands``."""
    parameters = options.INDEX_PARAMETERS
    index = commands.add_parser(
        "index",
        help="build an HNSW index (hnswlib) of the features of a Parquet file or dataset",
        description="Build an HNSW index (hnswlib, HNSWTransformer's parameters) of the features of FEATURES, a "
        ".parquet file or a folder of them such as skfungi extract writes, read --batch-size rows at a time: memory "
        "holds the index and one batch, never the whole data. INDEX is a folder: the index (hnsw.bin, hnsw.json: "
        "HNSWTransformer.load(INDEX) reads them), the id of every indexed row (ids.parquet) and the columns indexed "
        "(columns.json), which skfungi search reads from its queries.",
    )
    index.add_argument("features", metavar="FEATURES", help="a .parquet file, or a folder of .parquet files")
    index.add_argument("-o", "--output", required=True, metavar="INDEX", help="the index folder to write")
    _add_columns_arguments(index)
    index.add_argument("--metric", choices=("euclidean", "sqeuclidean", "cosine", "ip"), default=parameters["metric"])
    index.add_argument("--M", type=positive_int, default=parameters["M"], metavar="N", help="links per node")
    index.add_argument(
        "--ef-construction", type=positive_int, default=parameters["ef_construction"], metavar="N", help="build width"
    )
    index.add_argument(
        "--ef", type=positive_int, default=parameters["ef"], metavar="N", help="search width kept with the index"
    )
    index.add_argument(
        "--n-neighbors",
        type=positive_int,
        default=parameters["n_neighbors"],
        metavar="N",
        help="neighbours of the loaded HNSWTransformer's transform (its n_neighbors)",
    )
    index.add_argument("--seed", type=int, default=options.INDEX_SEED, metavar="N", help="seeds the graph's levels")
    index.add_argument("--overwrite", action="store_true", help="replace INDEX if it exists")
    _add_run_arguments(index)

    search = commands.add_parser(
        "search",
        help="the nearest indexed samples of query features (Parquet or .npy), with their distances",
        description="Write, for each query of QUERIES, its id, the ids of its k nearest samples in INDEX (nearest "
        "first) and their distances, to a Parquet file: columns 'query', 'neighbors' and 'distances' (fixed-size "
        "lists of k). QUERIES is a .parquet file or folder (the index's feature columns are read from it, its "
        "'sample' column gives the query ids) or a .npy array of shape (n, d) (ids: row numbers). A query that is "
        "also an indexed sample finds itself first.",
    )
    search.add_argument("index", metavar="INDEX", help="an index folder written by skfungi index")
    search.add_argument("queries", metavar="QUERIES", help="query features: .parquet file or folder, or .npy")
    search.add_argument("-k", type=positive_int, default=10, metavar="K", help="neighbours per query (default 10)")
    search.add_argument("-o", "--output", required=True, metavar="NEIGHBOURS", help="the .parquet file to write")
    search.add_argument("--ef", type=positive_int, metavar="N", help="search width (default: the index's)")
    search.add_argument("--id-column", metavar="NAME", help="ids of QUERIES (default 'sample', else row numbers)")
    search.add_argument("--overwrite", action="store_true", help="replace NEIGHBOURS if it exists")
    _add_run_arguments(search)


def _add_columns_arguments(parser) -> None:
    parser.add_argument(
        "--columns",
        metavar="LIST",
        help="comma-separated feature columns to index, concatenated in this order (default: every float column "
        "and fixed-size list of floats but the id column and 'label': all the blocks skfungi extract wrote)",
    )
    parser.add_argument(
        "--id-column",
        metavar="NAME",
        help="column of sample ids kept with the index (default 'sample'; without it, row numbers)",
    )


def _add_run_arguments(parser) -> None:
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=options.INDEX_BATCH_SIZE,
        metavar="N",
        help=f"rows read and added (or searched) at a time (default {options.INDEX_BATCH_SIZE})",
    )
    parser.add_argument(
        "--n-jobs",
        type=int,
        metavar="N",
        help="hnswlib threads (default 1: the graph is then the same at every build; -1: every core)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar, warnings and errors only")


# -- skfungi index ---------------------------------------------------------------------------------------------


def index_command(args: argparse.Namespace) -> int:
    """Run ``skfungi index``: FEATURES read batch by batch into an HNSW index written to INDEX."""
    from ..neighbors import HNSWTransformer
    from .progress import ProgressBars

    output = Path(args.output)
    _check_replaceable(output, args.overwrite, INDEX_FILES, "an index written by skfungi index")
    table = ParquetFeatures(args.features, args.columns, args.id_column)
    if table.n_rows == 0:
        raise CommandError(f"FEATURES {os.fspath(args.features)!r} has no rows: there is nothing to index.")
    estimator = HNSWTransformer(
        n_neighbors=args.n_neighbors,
        metric=args.metric,
        M=args.M,
        ef_construction=args.ef_construction,
        ef=args.ef,
        batch_size=args.batch_size,
        n_jobs=args.n_jobs,
        random_state=args.seed,
    )
    temporary = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    bars = ProgressBars("row", disable=args.quiet)
    bars.open("index", "index", total=table.n_rows)
    try:
        with IdWriter(temporary / IDS_FILE, table.id_type()) as ids:
            for features, batch_ids in table.batches(args.batch_size):
                estimator.partial_fit(features)
                ids.write(batch_ids)
                bars("index", len(features))
        bars.close_all()
        _check_ids(temporary / IDS_FILE, table.id_column, args.features)
        estimator.save(temporary)
        columns = {"columns": table.columns, "id_column": table.id_column, "features": os.fspath(args.features)}
        (temporary / COLUMNS_FILE).write_text(json.dumps(columns, indent=1) + "\n", encoding="utf-8")
        _replace(temporary, output)
    finally:
        bars.close_all()
        shutil.rmtree(temporary, ignore_errors=True)
    logger.info(
        "indexed %d rows of %d features (%s) in %s", table.n_rows, table.width, ", ".join(table.columns), output
    )
    return 0


def _check_ids(path: Path, id_column: str | None, features) -> None:
    """Refuse missing or repeated ids: search would name a neighbour by an id that is no sample, or by one that
    stands for several."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ids = pq.read_table(path).column("sample")
    where = f"column {id_column!r} of {os.fspath(features)!r}"
    if ids.null_count:
        row = pc.index(pc.is_null(ids), True).as_py()
        raise CommandError(f"{where} has no id in row {row}; every indexed row needs one (--id-column).")
    if pc.count_distinct(ids).as_py() < len(ids):
        counts = pc.value_counts(ids)
        repeated = counts.field("values")[pc.index(pc.greater(counts.field("counts"), 1), True).as_py()].as_py()
        rows = pc.indices_nonzero(pc.equal(ids, repeated)).to_pylist()[:2]
        raise CommandError(
            f"{where} holds the id {repeated!r} twice (rows {rows[0]} and {rows[1]}): search could not tell "
            "those neighbours apart. Give --id-column a column of unique ids."
        )


def _check_replaceable(output: Path, overwrite: bool, ours: set[str], what: str) -> None:
    if not output.parent.is_dir():
        raise CommandError(f"the folder of {os.fspath(output)!r}, {os.fspath(output.parent)!r}, does not exist.")
    if not output.exists():
        return
    if not overwrite:
        raise CommandError(f"{os.fspath(output)!r} exists; pass --overwrite to replace it.")
    others = sorted(entry.name for entry in output.iterdir()) if output.is_dir() else [output.name]
    if not set(others) <= ours:
        raise CommandError(
            f"{os.fspath(output)!r} is not {what} (it holds {others[0]!r}); --overwrite replaces only that: "
            "choose another path."
        )


def _replace(temporary: Path, output: Path) -> None:
    """Rename the complete ``temporary`` to ``output``; an earlier ``output`` goes only then."""
    if output.exists():
        discarded = output.with_name(f".{output.name}.old-{os.getpid()}")
        os.rename(output, discarded)
        shutil.rmtree(discarded)
    os.rename(temporary, output)


# -- skfungi search --------------------------------------------------------------------------------------------


def search_command(args: argparse.Namespace) -> int:
    """Run ``skfungi search``: the ``k`` nearest indexed samples of every query, written to a Parquet file."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..neighbors import HNSWTransformer
    from .chunks import atomic_write

    output, folder = Path(args.output), Path(args.index)
    if output.suffix.lower() != ".parquet":
        raise CommandError(f"NEIGHBOURS {os.fspath(output)!r} must end in .parquet.")
    if output.exists() and not args.overwrite:
        raise CommandError(f"{os.fspath(output)!r} exists; pass --overwrite to replace it.")
    try:
        described = json.loads((folder / COLUMNS_FILE).read_text(encoding="utf-8"))
        estimator = HNSWTransformer.load(folder)
        ids = pq.read_table(folder / IDS_FILE).column("sample").combine_chunks()
    except (OSError, ValueError, KeyError, pa.ArrowException) as error:
        raise CommandError(f"{os.fspath(folder)!r} is not an index written by skfungi index ({error}).") from error
    estimator.set_params(batch_size=args.batch_size, **({} if args.n_jobs is None else {"n_jobs": args.n_jobs}))
    if args.ef is not None:
        estimator.set_params(ef=args.ef)
    if args.k > estimator.n_samples_fit_:
        raise CommandError(f"-k {args.k} exceeds the {estimator.n_samples_fit_} samples of the index.")
    if len(ids) != estimator.n_samples_fit_:
        raise CommandError(f"{os.fspath(folder / IDS_FILE)!r} has {len(ids)} ids for {estimator.n_samples_fit_} rows.")
    queries = _queries(args.queries, described["columns"], args.id_column, estimator.n_features_in_)
    schema = pa.schema(
        [
            ("query", queries.id_type()),
            ("neighbors", pa.list_(ids.type, args.k)),
            ("distances", pa.list_(pa.float32(), args.k)),
        ]
    )

    def write(file) -> None:
        with pq.ParquetWriter(pa.PythonFile(file, mode="w"), schema) as writer:  # closed on an error too
            for features, query_ids in queries.batches(args.batch_size):
                distances, found = estimator.kneighbors(features, n_neighbors=args.k)
                neighbors = ids.take(pa.array(found.ravel()))
                columns = [
                    pa.array(query_ids, schema.field("query").type),
                    pa.FixedSizeListArray.from_arrays(neighbors, args.k),
                    pa.FixedSizeListArray.from_arrays(pa.array(np.asarray(distances, np.float32).ravel()), args.k),
                ]
                writer.write_table(pa.Table.from_arrays(columns, schema=schema))

    atomic_write(output, write)
    logger.info("wrote the %d nearest of %d queries to %s", args.k, queries.n_rows, output)
    return 0


def _queries(path: str, columns: list[str], id_column: str, width: int):
    """The queries: a Parquet file or folder (the index's columns), or a ``.npy`` array of ``width`` columns."""
    if Path(path).suffix.lower() != ".npy":
        table = ParquetFeatures(path, ",".join(columns), id_column)
        if table.width != width:
            raise CommandError(f"the queries have {table.width} features, the index {width}.")
        return table
    return NumpyFeatures(path, width)
