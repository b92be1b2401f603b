"""Sizing for 10M and 100M images: a MODEL computed from measured per-image costs, not a measurement.

Inputs (each a measurement of this repository, named where it comes from):

- seconds per 224-px image on one CPU thread: the plain embedding forward, and ``views="fast"`` and
  ``views="paper"`` (KL + DINO + SimCLR with the embedding) as multiples of it: ``benchmarks/presets.py``,
  docs/benchmarks.md "Cost of the views" (ImageNet MobileNetV2, random-weight ViT-Ti/16);
- 2 one-thread workers against one process: ``benchmarks/scale_out.py`` (``--scale-out JSON``) gives the
  parallel efficiency applied here to N workers (1.0 when not given);
- the HNSW build: ``benchmarks/index_build.py`` (``--index JSON``): its seconds per row at its width and
  size, extrapolated as ``n log n x width``.

The model: hours = images x seconds per image / (workers x efficiency) / 3600, each worker one core running one
torch thread; feature disk = images x (4 bytes x features + 16 bytes of id) (float32 Parquet: the features
barely compress); index = images x (4 x width + 8 M + 16) bytes (vectors, bottom-layer links, labels and upper
layers, hnswlib's layout) plus the ids. GPUs: no GPU figure has been measured (docs/benchmarks.md "GPU"), so
none is modelled.

Usage::

    .venv/bin/python benchmarks/sizing.py
    .venv/bin/python benchmarks/sizing.py --scale-out /tmp/scale_out.json --index /tmp/index_1m.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

# (backbone, embedding forward s/image on one CPU thread, "fast" x embedding, "paper" x embedding, width of
# one block): docs/benchmarks.md, "Cost of the views" (fastest repeats, 224 px, one thread)
MEASURED = [
    ("MobileNetV2 (ImageNet)", 0.245, 17.4, 262.0, 1280),
    ("ViT-Ti/16", 0.348, 8.9, 49.7, 192),
]
BLOCKS = 4  # the embedding, KL, DINO and SimCLR blocks, each as wide as the embedding (projection "auto")
WORKERS = (16, 64, 256)
SIZES = (10_000_000, 100_000_000)
M = 16


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if count < 1000 or unit == "PB":
            return f"{count:,.0f} {unit}" if unit == "B" else f"{count:,.1f} {unit}"
        count /= 1000
    raise AssertionError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale-out", help="JSON of benchmarks/scale_out.py: the 2-worker efficiency")
    parser.add_argument("--index", help="JSON of benchmarks/index_build.py: the build's cost per row")
    parser.add_argument("--index-width", type=int, default=512, help="width indexed after PCA (default 512)")
    args = parser.parse_args()

    efficiency, source = 1.0, "assumed 1.0 (no --scale-out)"
    if args.scale_out:
        medians = json.loads(Path(args.scale_out).read_text())["medians"]
        efficiency = medians["1 process, 1 thread"] / medians["2 workers, warm"] / 2
        source = f"{efficiency:.2f}, measured by benchmarks/scale_out.py (2 warm workers against 1 thread, / 2)"
    print("MODEL, not a measurement: per-image costs measured on one CPU thread, multiplied out.")
    print(f"parallel efficiency per worker: {source}\n")

    print("| backbone | views | s / image (1 thread) | images | core-hours |", end="")
    print("".join(f" hours on {n} workers |" for n in WORKERS))
    print("|---|---|---|---|---|" + "---|" * len(WORKERS))
    for name, embedding, fast, paper, _ in MEASURED:
        for views, factor in (("embedding only", 1.0), ("fast", fast), ("paper", paper)):
            seconds = embedding * factor
            for images in SIZES:
                core_hours = images * seconds / 3600
                hours = "".join(f" {core_hours / (n * efficiency):,.1f} |" for n in WORKERS)
                print(f"| {name} | {views} | {seconds:.2f} | {images / 1e6:.0f}M | {core_hours:,.0f} |{hours}")

    print("\n| backbone | features per image | images | feature disk (float32) | index, full width | ", end="")
    print(f"index after PCA to {args.index_width} |")
    print("|---|---|---|---|---|---|")
    for name, *_, width in MEASURED:
        features = BLOCKS * width
        for images in SIZES:
            disk = images * (4 * features + 16)
            full = images * (4 * features + 8 * M + 16 + 16)
            reduced = images * (4 * min(features, args.index_width) + 8 * M + 16 + 16)
            print(
                f"| {name} | {features} | {images / 1e6:.0f}M | {human_bytes(disk)} | {human_bytes(full)} | "
                f"{human_bytes(reduced)} |"
            )

    if args.index:
        built = json.loads(Path(args.index).read_text())
        n, width, threads = built["n"], built["dim"], built["n_jobs"]
        per_unit = built["build_s"] / (n * math.log(n) * width)
        print(
            f"\nHNSW build, extrapolated from {n:,} rows x {width} in {built['build_s']:.0f} s on {threads} threads "
            f"(M={built['M']}, ef_construction={built['ef_construction']}) as n log n x width:"
        )
        print("\n| images | width | build on 2 threads (hours) | on 32 threads, if it scales (hours) |")
        print("|---|---|---|---|")
        for images in SIZES:
            hours = per_unit * images * math.log(images) * args.index_width / 3600
            print(f"| {images / 1e6:.0f}M | {args.index_width} | {hours:,.1f} | {hours * threads / 32:,.1f} |")


if __name__ == "__main__":
    main()
