"""HNSWTransformer against exact brute-force KNeighborsTransformer, at 100,000 and 1,000,000 vectors.

For ``--n`` vectors of ``--dim`` (512) dimensions, in one run:

1. a child process builds ``HNSWTransformer`` by streaming 10,000-row blocks
   into ``partial_fit`` (the blocks are generated on the fly, so the process
   never holds the data set as an array: its peak memory is the index); it
   reports the build time and peak RSS (``VmHWM``), then times
   ``kneighbors(queries, 20)`` for each ``--ef``;
2. this process generates the same vectors as one array, fits
   ``KNeighborsTransformer(n_neighbors=20, algorithm="brute")`` and times the
   exact ``kneighbors(queries, 20)``;
3. it reports, per ``ef``: queries/s and the speed-up over exact search,
   recall@20 against the exact neighbours, and the accuracy of a 20-NN
   uniform vote (labels defined below) with approximate vs exact neighbours,
   and how often the two votes agree.

Data (``--data``), generated block by block from ``--seed``:

* ``uniform``: i.i.d. Gaussian vectors scaled to unit length (uniform on the
  sphere). Labels: ``argmax`` over 10 fixed random directions. This is the
  hardest case for any graph index: in 512 dimensions a random point's
  nearest neighbours are barely nearer than the rest.
* ``clustered``: unit vectors with low intrinsic dimension, closer to real
  embeddings: ``normalise(A (c_k + z) + 0.3 e)`` with ``A`` a random
  ``512 x 32`` basis (entries of variance 1/32), 1,000 standard Gaussian
  cluster centres ``c_k`` and standard Gaussian ``z`` (32-d) and ``e``
  (512-d): about 96% of each vector's energy in 32 dimensions, the rest
  isotropic. Labels: ``k mod 10``.
* ``--features file.npz`` (arrays ``train``, ``test``, optional
  ``train_labels``, ``test_labels``): real features, e.g. FUNGI features
  saved with ``np.savez``; reduced with the protocol's PCA to 512 first.
  The test features are the queries.
* ``--fashion-mnist N``: real FUNGI features made here (then as
  ``--features``): embedding + KL gradient of the demo's ImageNet
  MobileNetV2 at 32 px (the demo's settings) for ``N`` Fashion-MNIST
  training images and ``N // 5`` test images, cached in ``--features``
  (default ``/tmp/skfungi_fashion_mnist_<N>.npz``). Needs the demo assets.

Queries are ``--queries`` fresh vectors of the same kind (not in the index).
Both searches use every core: hnswlib's threads (``n_jobs=-1``) and
scikit-learn's OpenMP/BLAS threads.

Usage::

    .venv/bin/python benchmarks/neighbors.py --n 100000 --data uniform
    .venv/bin/python benchmarks/neighbors.py --n 1000000 --data clustered --ef 16,32,64,128
    .venv/bin/python benchmarks/neighbors.py --fashion-mnist 5000    # real FUNGI features
    .venv/bin/python benchmarks/neighbors.py --quick                 # 20,000 vectors, ~1 min
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
from timing import current_rss_mb, peak_rss_mb, stopwatch, timed

BLOCK = 10_000
K = 20
DEMO_IMAGE_SIZE = 32  # the demo's view size (skfungi demo, make demo)


# -- data ------------------------------------------------------------------------------------


class Vectors:
    """Deterministic vectors and labels, generated in blocks of ``BLOCK`` rows."""

    def __init__(self, kind: str, dim: int, seed: int):
        if kind not in ("uniform", "clustered"):
            raise ValueError(f"unknown data kind {kind!r}")
        self.kind, self.dim, self.seed = kind, dim, seed
        shared = np.random.default_rng([seed, 0])
        self.directions = shared.standard_normal((dim, 10)).astype(np.float32)
        self.basis = (shared.standard_normal((dim, 32)) / np.sqrt(32)).astype(np.float32)
        self.centres = shared.standard_normal((1000, 32)).astype(np.float32)

    def block(self, index: int, stream: int = 1) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, stream, index])
        if self.kind == "uniform":
            X = rng.standard_normal((BLOCK, self.dim), dtype=np.float32)
            X /= np.linalg.norm(X, axis=1, keepdims=True)
            return X, np.argmax(X @ self.directions, axis=1)
        cluster = rng.integers(0, len(self.centres), BLOCK)
        latent = self.centres[cluster] + rng.standard_normal((BLOCK, 32), dtype=np.float32)
        X = latent @ self.basis.T + 0.3 * rng.standard_normal((BLOCK, self.dim), dtype=np.float32)
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        return X, cluster % 10

    def rows(self, n: int, stream: int = 1):
        """Yield ``(X, y)`` blocks covering the first ``n`` rows of ``stream``."""
        for index in range(-(-n // BLOCK)):
            X, y = self.block(index, stream)
            stop = min(BLOCK, n - index * BLOCK)
            yield X[:stop], y[:stop]

    def array(self, n: int, stream: int = 1) -> tuple[np.ndarray, np.ndarray]:
        X = np.empty((n, self.dim), dtype=np.float32)
        y = np.empty(n, dtype=np.intp)
        start = 0
        for block_X, block_y in self.rows(n, stream):
            X[start : start + len(block_X)], y[start : start + len(block_y)] = block_X, block_y
            start += len(block_X)
        return X, y


# -- memory (Linux /proc) ----------------------------------------------------------------------


# -- the child: streaming build and approximate queries -------------------------------------------


def child(args) -> None:
    from skfungi.neighbors import HNSWTransformer

    queries = np.load(args.queries_file)
    baseline_mb = current_rss_mb()
    model = HNSWTransformer(
        n_neighbors=K, metric=args.metric, M=args.M, ef_construction=args.ef_construction, n_jobs=-1, random_state=0
    )
    with stopwatch() as build:
        if args.features:
            train = np.load(args.train_file, mmap_mode="r")
            for offset in range(0, len(train), BLOCK):
                model.partial_fit(train[offset : offset + BLOCK])
        else:
            for X, _ in Vectors(args.data, args.dim, args.seed).rows(args.n):
                model.partial_fit(X)
    build_s = build.wall
    peak_after_build_mb = peak_rss_mb()

    results = []
    model.set_params(ef=args.ef_list[0]).kneighbors(queries[:100])  # warm-up
    for ef in args.ef_list:
        model.set_params(ef=ef)
        seconds, indices = timed(model.kneighbors, queries, K, return_distance=False)
        np.save(os.path.join(args.out_dir, f"hnsw_ef{ef}.npy"), indices)
        results.append({"ef": ef, "query_s": seconds})
    report = {
        "build_s": build_s,
        "baseline_rss_mb": baseline_mb,
        "peak_rss_after_build_mb": peak_after_build_mb,
        "peak_rss_mb": peak_rss_mb(),
        "index_elements": model.n_samples_fit_,
        "queries": results,
    }
    print("CHILD-REPORT " + json.dumps(report), flush=True)


# -- the parent: exact search and comparison --------------------------------------------------------


def knn_vote(neighbors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    votes = labels[neighbors]
    n_classes = int(labels.max()) + 1
    counts = np.zeros((len(votes), n_classes), dtype=np.int64)
    np.add.at(counts, (np.arange(len(votes))[:, None], votes), 1)
    return counts.argmax(axis=1)  # ties -> smallest label, as KNeighborsClassifier


def extract_fashion_mnist(n_train: int, path: str) -> None:
    """Embedding + KL FUNGI features of Fashion-MNIST with the demo's MobileNetV2, saved to ``path``."""
    import torch

    from skfungi import FungiTransformer, ImageBackbone
    from skfungi.backbones.mobilenet import MOBILENET_V2_LAYER as MOBILENET_LAYER
    from skfungi.backbones.mobilenet import embed_mobilenet
    from skfungi.datasets import load_fashion_mnist, load_mobilenet_v2

    torch.set_num_threads(os.cpu_count() or 1)
    X_train, y_train, X_test, y_test = load_fashion_mnist(n_train, max(1, n_train // 5), random_state=0)
    backbone = ImageBackbone(load_mobilenet_v2(), embed=embed_mobilenet, input_size=DEMO_IMAGE_SIZE)
    fungi = FungiTransformer(backbone, losses=("kl",), layer=MOBILENET_LAYER, batch_size=128, random_state=0)
    with stopwatch() as extraction:
        train = fungi.fit_transform(X_train)
        test = fungi.transform(X_test)
    print(f"extracted {len(train) + len(test):,} FUNGI rows in {extraction.wall:.0f} s", flush=True)
    np.savez(path, train=train, test=test, train_labels=y_train, test_labels=y_test)


def load_features(path: str, n_components: int):
    from skfungi.protocols import CappedPCA

    data = np.load(path)
    pca = CappedPCA(n_components).fit(data["train"])
    train = pca.transform(data["train"]).astype(np.float32)
    test = pca.transform(data["test"]).astype(np.float32)
    train_labels = data["train_labels"] if "train_labels" in data else np.zeros(len(train), dtype=np.intp)
    test_labels = data["test_labels"] if "test_labels" in data else np.zeros(len(test), dtype=np.intp)
    return train, np.asarray(train_labels), test, np.asarray(test_labels)


def parent(args) -> None:
    from sklearn.neighbors import KNeighborsTransformer

    with tempfile.TemporaryDirectory() as out_dir:
        queries_file = os.path.join(out_dir, "queries.npy")
        train_file = os.path.join(out_dir, "train.npy")
        if args.features:
            if args.fashion_mnist and not os.path.exists(args.features):
                extract_fashion_mnist(args.fashion_mnist, args.features)
            train, train_labels, queries, query_labels = load_features(args.features, args.dim)
            args.n, args.dim = train.shape
            np.save(train_file, train)
            del train
        else:
            vectors = Vectors(args.data, args.dim, args.seed)
            queries, query_labels = vectors.array(args.queries, stream=2)
        np.save(queries_file, queries)

        command = [sys.executable, __file__, "--child", "--queries-file", queries_file, "--train-file", train_file]
        command += ["--out-dir", out_dir] + [arg for arg in sys.argv[1:] if arg != "--child"]
        print(f"[{time.strftime('%H:%M:%S')}] building HNSW over {args.n:,} x {args.dim} ...", flush=True)
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            sys.exit(f"child failed:\n{completed.stdout}\n{completed.stderr}")
        line = next(line for line in completed.stdout.splitlines() if line.startswith("CHILD-REPORT "))
        approximate = json.loads(line[len("CHILD-REPORT ") :])
        print(f"[{time.strftime('%H:%M:%S')}] built in {approximate['build_s']:.0f} s; exact search ...", flush=True)

        if args.features:
            train = np.load(train_file)
        else:
            train, train_labels = vectors.array(args.n)
        exact_metric = {"euclidean": "euclidean", "cosine": "cosine", "sqeuclidean": "sqeuclidean"}[args.metric]
        exact_model = KNeighborsTransformer(n_neighbors=K, algorithm="brute", metric=exact_metric)
        exact_fit_s, _ = timed(exact_model.fit, train)
        exact_query_s, exact = timed(exact_model.kneighbors, queries, K, return_distance=False)
        raw_mb = train.nbytes / 2**20
        del exact_model, train

        exact_qps = len(queries) / exact_query_s
        exact_vote = knn_vote(exact, train_labels)
        rows = []
        for result in approximate["queries"]:
            found = np.load(os.path.join(out_dir, f"hnsw_ef{result['ef']}.npy"))
            recall = np.mean([len(np.intersect1d(a, b)) / K for a, b in zip(found, exact, strict=True)])
            vote = knn_vote(found, train_labels)
            qps = len(queries) / result["query_s"]
            rows.append(
                {
                    "ef": result["ef"],
                    "recall_at_20": float(recall),
                    "queries_per_s": qps,
                    "speedup": qps / exact_qps,
                    "knn_accuracy": float(np.mean(vote == query_labels)),
                    "knn_agreement": float(np.mean(vote == exact_vote)),
                }
            )

    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at the end",
        "data": (
            f"Fashion-MNIST FUNGI features (embedding + KL, MobileNetV2 at 32 px), PCA to {args.dim}"
            if args.fashion_mnist
            else args.features or args.data
        ),
        "n": args.n,
        "dim": args.dim,
        "n_queries": len(queries),
        "metric": args.metric,
        "M": args.M,
        "ef_construction": args.ef_construction,
        "raw_data_mb": raw_mb,
        "hnsw_build_s": approximate["build_s"],
        "hnsw_baseline_rss_mb": approximate["baseline_rss_mb"],
        "hnsw_peak_rss_mb": approximate["peak_rss_mb"],
        "peak_rss_over_raw": approximate["peak_rss_mb"] / raw_mb,
        "peak_rss_above_baseline_over_raw": (approximate["peak_rss_mb"] - approximate["baseline_rss_mb"]) / raw_mb,
        "exact_fit_s": exact_fit_s,
        "exact_queries_per_s": exact_qps,
        "exact_knn_accuracy": float(np.mean(exact_vote == query_labels)),
        "hnsw": rows,
    }
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    print(json.dumps(report, indent=2))
    print_tables(report)


def print_tables(report: dict) -> None:
    print()
    print(
        f"{report['data']}: n={report['n']:,}, d={report['dim']}, {report['n_queries']:,} queries, "
        f"metric={report['metric']}, M={report['M']}, ef_construction={report['ef_construction']}"
    )
    print(
        f"build {report['hnsw_build_s']:.0f} s (streamed partial_fit); peak RSS {report['hnsw_peak_rss_mb']:.0f} MB "
        f"= {report['peak_rss_over_raw']:.2f}x the raw {report['raw_data_mb']:.0f} MB "
        f"({report['peak_rss_above_baseline_over_raw']:.2f}x above the {report['hnsw_baseline_rss_mb']:.0f} MB "
        "after imports)"
    )
    print(
        f"exact brute force: {report['exact_queries_per_s']:.1f} queries/s, "
        f"20-NN accuracy {report['exact_knn_accuracy']:.4f}"
    )
    print()
    print("| ef | recall@20 | queries/s | x exact | 20-NN accuracy | agreement with exact vote |")
    print("|---|---|---|---|---|---|")
    for row in report["hnsw"]:
        print(
            f"| {row['ef']} | {row['recall_at_20']:.4f} | {row['queries_per_s']:.0f} | {row['speedup']:.1f} | "
            f"{row['knn_accuracy']:.4f} | {row['knn_agreement']:.4f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="indexed vectors")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--data", choices=["uniform", "clustered"], default="uniform")
    parser.add_argument("--features", default=None, help="npz of real features (train, test[, labels])")
    parser.add_argument("--fashion-mnist", type=int, default=0, help="extract N Fashion-MNIST FUNGI features")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--metric", choices=["euclidean", "cosine", "sqeuclidean"], default="euclidean")
    parser.add_argument("--M", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--ef", default="32,64,128,256,512", help="comma-separated search ef values")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the report here")
    parser.add_argument("--quick", action="store_true", help="20,000 vectors, 500 queries")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--queries-file", help=argparse.SUPPRESS)
    parser.add_argument("--train-file", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.n, args.queries = 20_000, 500
    args.ef_list = [int(value) for value in args.ef.split(",")]
    if args.fashion_mnist and not args.features:
        args.features = f"/tmp/skfungi_fashion_mnist_{args.fashion_mnist}.npz"
        sys.argv += ["--features", args.features]  # the child reads the same file
    if args.child:
        child(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
