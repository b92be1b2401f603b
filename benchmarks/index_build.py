"""``skfungi index`` on a large Parquet dataset: build time, peak memory, and recall@10 of ``skfungi search``.

In one run:

1. writes ``--n`` clustered unit vectors of ``--dim`` dimensions (the
   ``clustered`` data of ``benchmarks/neighbors.py``: low intrinsic dimension,
   as real embeddings have) as a Parquet dataset with skfungi's own writer,
   exactly as ``skfungi extract -o features/`` writes one (a ``sample`` id
   column and one fixed-size-list block column, part files of 128 MiB);
2. runs ``skfungi index`` on it in a child process and reports its wall time
   and peak resident memory (``ru_maxrss`` of the child), next to the size of
   the raw float32 vectors and of the index file;
3. runs ``skfungi search`` for ``--queries`` fresh vectors (a ``.npy``) at each
   ``--ef``, in child processes (the wall time includes loading the index);
4. computes the exact 10 nearest neighbours of the same queries by brute
   force over the dataset, read batch by batch in this process, and reports
   recall@10 (the fraction of the exact 10 that ``search`` returns).

Usage::

    .venv/bin/python benchmarks/index_build.py --quick          # 20,000 x 64, a minute
    .venv/bin/python benchmarks/index_build.py --n 1000000 --dim 256 --M 16 --ef-construction 100 \\
        --n-jobs 2 --ef 10,20,40,80 --json /tmp/index_1m.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, os.fspath(Path(__file__).resolve().parent))
from neighbors import Vectors  # the clustered vectors of the HNSWTransformer benchmark
from timing import process_peak_rss_mb, stopwatch, timed

BENCHMARKS = os.fspath(Path(__file__).resolve().parent)  # where the child finds timing.py

K = 10
# The child reports its own peak RSS (VmHWM) at exit: the ru_maxrss of a child includes its parent's high-water
# mark at the fork, here the parent's brute-force search.
CHILD = (
    "import atexit, runpy, sys\n"
    "path, benchmarks = sys.argv.pop(1), sys.argv.pop(1)\n"
    "sys.path.insert(0, benchmarks)\n"
    "from timing import peak_rss_mb\n"
    "sys.path.remove(benchmarks)\n"
    "atexit.register(lambda: open(path, 'w').write(str(peak_rss_mb())))\n"
    "sys.argv[0] = 'skfungi'\n"
    "runpy.run_module('skfungi', run_name='__main__')\n"
)


def write_dataset(folder: Path, n: int, dim: int, seed: int) -> float:
    """The dataset as ``skfungi extract`` writes one; returns the seconds it took."""
    from skfungi.cli.outputs import write_dataset as write

    vectors = Vectors("clustered", dim, seed)
    with stopwatch() as elapsed:
        write(
            folder,
            lambda: (X for X, _ in vectors.rows(n)),
            [f"embedding{i}" for i in range(dim)],
            np.arange(n, dtype=np.int64),
            None,
            "blocks",
        )
    return elapsed.wall


def run_child(arguments: list[str]) -> tuple[float, float]:
    """Run ``skfungi <arguments>`` in a child process; its wall seconds and peak RSS in MiB."""
    with tempfile.NamedTemporaryFile(suffix=".peak") as peak:
        seconds, done = timed(subprocess.run, [sys.executable, "-c", CHILD, peak.name, BENCHMARKS, *arguments])
        if done.returncode != 0:
            raise SystemExit(f"skfungi {' '.join(arguments)} failed")
        return seconds, float(Path(peak.name).read_text())


def exact_neighbours(folder: Path, queries: np.ndarray, k: int) -> np.ndarray:
    """Row numbers of the exact ``k`` nearest (euclidean) rows of each query, reading ``folder`` batch by batch."""
    import pyarrow.parquet as pq

    best_distances = np.full((len(queries), 0), np.inf, dtype=np.float32)
    best_rows = np.empty((len(queries), 0), dtype=np.int64)
    query_norms = (queries**2).sum(1)[:, None]
    for file in sorted(folder.glob("part-*.parquet")):
        for batch in pq.ParquetFile(file).iter_batches(batch_size=100_000, columns=["sample", "embedding"]):
            column = batch.column("embedding")
            X = column.flatten().to_numpy().reshape(len(column), -1)
            rows = batch.column("sample").to_numpy()
            distances = query_norms - 2 * queries @ X.T + (X**2).sum(1)[None, :]
            best_distances = np.hstack([best_distances, distances])
            best_rows = np.hstack([best_rows, np.broadcast_to(rows, distances.shape)])
            keep = np.argpartition(best_distances, k, axis=1)[:, :k]
            best_distances = np.take_along_axis(best_distances, keep, axis=1)
            best_rows = np.take_along_axis(best_rows, keep, axis=1)
    return best_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--M", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=100)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--ef", default="10,20,40,80", help="comma-separated search widths")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="20,000 vectors of 64 dimensions")
    parser.add_argument("--workdir", help="folder for the dataset and index (default: a temporary folder)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.quick:
        args.n, args.dim = 20_000, 64
    efs = [int(ef) for ef in args.ef.split(",")]

    with tempfile.TemporaryDirectory(dir=args.workdir) as work:
        work = Path(work)
        dataset, index = work / "features", work / "index"
        write_seconds = write_dataset(dataset, args.n, args.dim, args.seed)
        dataset_mb = sum(file.stat().st_size for file in dataset.iterdir()) / 2**20
        print(f"wrote {args.n} x {args.dim} to {dataset} in {write_seconds:.1f} s ({dataset_mb:.0f} MiB)", flush=True)
        build = [
            "index", os.fspath(dataset), "-o", os.fspath(index), "--M", str(args.M),
            "--ef-construction", str(args.ef_construction), "--n-jobs", str(args.n_jobs), "-q",
        ]  # fmt: skip
        build_seconds, build_rss = run_child(build)
        index_mb = (index / "hnsw.bin").stat().st_size / 2**20
        print(f"built in {build_seconds:.1f} s, peak RSS {build_rss:.0f} MiB, index {index_mb:.0f} MiB", flush=True)

        queries, _ = Vectors("clustered", args.dim, args.seed).array(args.queries, stream=2)
        np.save(work / "queries.npy", queries)
        exact_seconds, exact = timed(exact_neighbours, dataset, queries, K)
        rows = []
        for ef in efs:
            output = work / f"nn_{ef}.parquet"
            search = ["search", os.fspath(index), os.fspath(work / "queries.npy"), "-k", str(K), "--ef", str(ef)]
            seconds, rss = run_child([*search, "--n-jobs", str(args.n_jobs), "-o", os.fspath(output), "-q"])
            import pandas as pd

            found = np.stack(pd.read_parquet(output)["neighbors"].to_numpy())
            recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(found, exact, strict=True)])
            rows.append({"ef": ef, "recall@10": float(recall), "search_s": seconds, "search_rss_mb": rss})
            print(f"ef={ef}: recall@10 {recall:.4f}, search {seconds:.1f} s (index loaded), peak RSS {rss:.0f} MiB")

    raw_mb = args.n * args.dim * 4 / 2**20
    report = {
        "n": args.n,
        "dim": args.dim,
        "M": args.M,
        "ef_construction": args.ef_construction,
        "n_jobs": args.n_jobs,
        "queries": args.queries,
        "build_s": build_seconds,
        "build_peak_rss_mb": build_rss,
        "raw_vectors_mb": raw_mb,
        "dataset_mb": dataset_mb,
        "index_file_mb": index_mb,
        "exact_search_s": exact_seconds,
        "searches": rows,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average": os.getloadavg(),
        "self_peak_rss_mb": process_peak_rss_mb(),
    }
    print()
    print("| n | dim | build (s) | peak RSS (MiB) | raw vectors (MiB) | RSS / raw | index file (MiB) |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {args.n:,} | {args.dim} | {build_seconds:.0f} | {build_rss:,.0f} | {raw_mb:,.0f} | "
        f"{build_rss / raw_mb:.2f}x | {index_mb:,.0f} |"
    )
    print()
    print("| ef | recall@10 | search of all queries, index load included (s) |")
    print("|---|---|---|")
    for row in rows:
        print(f"| {row['ef']} | {row['recall@10']:.4f} | {row['search_s']:.1f} |")
    print(f"\nexact search of the {args.queries} queries (NumPy, batch by batch): {exact_seconds:.1f} s")
    print(f"load average at the end: {report['load_average']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
