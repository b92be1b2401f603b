"""``skfungi extract --workers 2`` against one process on the same machine: speed-up and bitwise equality.

One run, the configurations interleaved (A, B, C, D, A, B, C, D, ...) so that a slow spell of a shared machine
hits them alike; each is the ``skfungi extract`` command in a child process, timed from start to exit, on the
same images with the same saved transformer (``--transformer``: the fit is done once, before, and timed apart):

- ``1 process, 1 thread``: ``--threads 1``, whose features the workers must equal bit for bit;
- ``1 process, 2 threads``: ``--threads 2``, the single process using both cores;
- ``2 workers``: ``--workers 2``, a local Dask cluster started and stopped by the command;
- ``2 workers, warm``: ``--scheduler`` of a cluster of 2 workers (1 thread each) started once by this
  script, so that the start of the cluster is not counted.

It prints the median seconds per configuration, the speed-ups over one process, and whether each output
equals the ``--threads 1`` one bit for bit (ids, order, values), else the largest difference.

Usage::

    .venv/bin/python benchmarks/scale_out.py --quick                  # tiny random ViT, ~1 min
    .venv/bin/python benchmarks/scale_out.py --images 16 --chunk-size 4 --repeats 2   # MobileNetV2, fast views
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from timing import medians, timed


def write_images(folder: Path, n: int, size: int, seed: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for index in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{index:05d}.png")


def skfungi(*arguments) -> float:
    """Seconds of ``skfungi <arguments>`` in a child process (offline, as the tests run)."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    seconds, completed = timed(subprocess.run, [sys.executable, "-m", "skfungi", *map(str, arguments)], env=environment)
    if completed.returncode != 0:
        raise SystemExit(f"skfungi {' '.join(map(str, arguments))} failed")
    return seconds


def compare(found: Path, reference: Path) -> str:
    import pyarrow.parquet as pq

    a, b = pq.read_table(found).to_pandas(), pq.read_table(reference).to_pandas()
    if a["sample"].tolist() != b["sample"].tolist():
        return "other ids or order"
    blocks = [column for column in a.columns if column not in ("sample", "label")]
    x, y = (np.hstack([np.stack(table[block]) for block in blocks]) for table in (a, b))
    return "bit for bit" if np.array_equal(x, y) else f"max |difference| {np.abs(x - y).max():.2e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="skfungi:mobilenet_v2")
    parser.add_argument("--views", default="fast", choices=("fast", "paper"))
    parser.add_argument("--losses", default="kl,dino,simclr")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=96, help="side of the random PNG images (pixels)")
    parser.add_argument("--chunk-size", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--fit-samples", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="timm's tiny test ViT with random weights, 32 images")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.quick:
        args.backbone, args.images, args.chunk_size = "timm:test_vit?pretrained=false", 32, 8

    import distributed

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        write_images(work / "images", args.images, args.image_size)
        common = ["--batch-size", args.batch_size, "--chunk-size", args.chunk_size, "-q"]
        fit_seconds = skfungi(
            "extract", work / "images", "-o", work / "fit.npy", "--backbone", args.backbone, "--views", args.views,
            "--losses", args.losses, "--fit-samples", args.fit_samples, "--save-transformer", work / "fit.pkl",
            "--threads", "1", *common,
        )  # fmt: skip
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
        )
        configurations = {
            "1 process, 1 thread": ["--threads", "1"],
            "1 process, 2 threads": ["--threads", "2"],
            "2 workers": ["--workers", "2"],
            "2 workers, warm": ["--scheduler", cluster.scheduler_address],
        }
        seconds = {name: [] for name in configurations}
        with cluster:
            for repeat in range(args.repeats):
                for name, options in configurations.items():
                    output = work / f"{name.replace(' ', '_').replace(',', '')}/"
                    took = skfungi(
                        "extract", work / "images", "-o", output, "--transformer", work / "fit.pkl", *options,
                        *common, "--overwrite",
                    )  # fmt: skip
                    seconds[name].append(took)
                    print(f"repeat {repeat + 1}, {name}: {took:.1f} s", flush=True)
        reference = work / "1_process_1_thread"
        equality = {name: compare(work / name.replace(" ", "_").replace(",", ""), reference) for name in configurations}

    median = medians(seconds)
    single = median["1 process, 1 thread"]
    print()
    print(f"{args.images} images of {args.image_size} px, {args.backbone}, views={args.views}, losses {args.losses}, ")
    print(f"chunks of {args.chunk_size}; fit (once, --save-transformer): {fit_seconds:.1f} s")
    print()
    print("| configuration | median s | s / image | speed-up over 1 thread | over 2 threads | features vs 1 thread |")
    print("|---|---|---|---|---|---|")
    for name, took in median.items():
        print(
            f"| {name} | {took:.1f} | {took / args.images:.2f} | {single / took:.2f}x | "
            f"{median['1 process, 2 threads'] / took:.2f}x | {equality[name]} |"
        )
    print(f"\nall repeats: {json.dumps(seconds)}")
    print(f"load average at the end: {os.getloadavg()}; {platform.processor() or platform.machine()}, {os.cpu_count()}")
    if args.json:
        report = {"args": vars(args), "seconds": seconds, "medians": median, "equality": equality}
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
