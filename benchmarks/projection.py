"""Cost of each projection per sample, side by side: dense Rademacher, Kronecker and SRHT.

For each target layer (its gradient shape, projection width and gradient
tokens per view: a CNN's spatial positions are tokens, a CLS-pooled ViT keeps
one per view), random float32 factors ``g (S, M, d_out)`` and
``a (S, M, d_in + 1)`` with ``M = views x tokens`` (what the engine hands a
projection) go through ``reduce`` then ``project``. The projections are
timed interleaved (dense, Kronecker, SRHT, dense, ...) and the fastest repeat
of each is kept, so a slow spell on a shared machine hits all three alike;
the dense figure includes regenerating its matrix once per call of ``S``
samples (the engine regenerates it once per 64 MiB of reduced gradients).

``--memory`` adds the extra peak resident memory of one ``reduce`` +
``project`` call of ``S`` samples, each measured in a fresh interpreter
(the peak RSS mark is reset after the factors are allocated; see
``projection_child`` in ``throughput.py``).

Usage::

    .venv/bin/python benchmarks/projection.py --threads 1                 # every layer, 1 and 12 views
    .venv/bin/python benchmarks/projection.py --threads 1 --memory --json /tmp/projection.json
    .venv/bin/python benchmarks/projection.py --quick                      # MobileNetV2 and ViT-B, 8 samples
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import platform
import subprocess
import sys
from pathlib import Path

import torch
from timing import current_rss_mb, fastest, interleaved, peak_rss_mb, reset_peak_rss

from skfungi.projection import make_projection

PROJECTIONS = ("rademacher", "kronecker", "srht")

# name -> (gradient shape, projection width = embedding width, gradient tokens per view)
# (224 px images, a 32-token text, one Resemblyzer clip)
LAYERS = {
    "MobileNetV2 features.18.0": ((1280, 320), 1280, 49),  # a 1x1 convolution without bias
    "ViT-S/16 blocks.11.attn.proj": ((384, 385), 384, 1),
    "ViT-B/16 blocks.11.attn.proj": ((768, 769), 768, 1),
    "MiniLM encoder.layer.5.attention.output.dense": ((384, 385), 384, 32),
    "Resemblyzer linear": ((256, 257), 256, 1),
}
QUICK_LAYERS = ("MobileNetV2 features.18.0", "ViT-B/16 blocks.11.attn.proj")


def factors(layer: str, samples: int, views: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    (rows, columns), _, tokens = LAYERS[layer]
    generator = torch.Generator().manual_seed(0)
    g = torch.randn(samples, views * tokens, rows, generator=generator)
    a = torch.randn(samples, views * tokens, columns, generator=generator)
    return g.to(device), a.to(device)


def fitted(name: str, layer: str):
    shape, width, _ = LAYERS[layer]
    return make_projection(name).fit(shape, width, 0)


def time_layer(layer: str, samples: int, views: int, repeats: int, device: str) -> dict[str, float]:
    """Fastest seconds per sample of ``reduce`` + ``project`` for each projection, interleaved."""
    g, a = factors(layer, samples, views, device)
    projections = {name: fitted(name, layer) for name in PROJECTIONS}
    for projection in projections.values():  # first call: SRHT draws its signs, kernels warm up
        projection.project(projection.reduce(g[:1], a[:1]))
    calls = {name: functools.partial(reduce_and_project, projection, g, a) for name, projection in projections.items()}
    return {name: best / samples for name, best in fastest(interleaved(calls, repeats, device)).items()}


def reduce_and_project(projection, g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    out = projection.project(projection.reduce(g, a))
    assert out.shape == (len(g), projection.n_components_)
    return out


def memory_child(layer: str, name: str, samples: int, views: int) -> float:
    """Extra peak RSS (MB) of the first ``reduce`` + ``project`` call, in this (fresh) process."""
    g, a = factors(layer, samples, views, "cpu")
    projection = fitted(name, layer)
    gc.collect()
    before = current_rss_mb()
    if not reset_peak_rss():
        raise RuntimeError("cannot reset the peak RSS mark (/proc/self/clear_refs) on this system")
    projection.project(projection.reduce(g, a))
    return peak_rss_mb() - before


def memory(layer: str, name: str, samples: int, views: int, threads: int) -> float:
    command = [sys.executable, str(Path(__file__).resolve()), "--memory-child", layer, name]
    command += ["--samples", str(samples), "--views", str(views), "--threads", str(threads)]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return float(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--samples", type=int, default=32, help="samples per call (default 32)")
    parser.add_argument("--views", default="1,12", help="views per sample, comma-separated (default 1,12)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", default=",".join(LAYERS), help="comma-separated, among: " + ", ".join(LAYERS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory", action="store_true", help="also the extra peak RSS of one call (CPU, 1 view)")
    parser.add_argument("--quick", action="store_true", help="MobileNetV2 and ViT-B only, 8 samples, 1 repeat")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--memory-child", nargs=2, metavar=("LAYER", "PROJECTION"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_child:
        print(memory_child(*args.memory_child, args.samples, int(args.views)))
        return {}
    if args.quick:
        args.layers, args.samples, args.repeats = ",".join(QUICK_LAYERS), 8, 1
    rows = []
    for layer in args.layers.split(","):
        for views in (int(v) for v in args.views.split(",")):
            seconds = time_layer(layer, args.samples, views, args.repeats, args.device)
            row = {
                "layer": layer,
                "gradient_shape": list(LAYERS[layer][0]),
                "tokens_per_sample": views * LAYERS[layer][2],
                "ms_per_sample": {name: 1000 * value for name, value in seconds.items()},
                "dense_over": {name: seconds["rademacher"] / value for name, value in seconds.items()},
            }
            if args.memory and views == 1:
                row["extra_peak_mb"] = {
                    name: memory(layer, name, args.samples, views, args.threads) for name in PROJECTIONS
                }
            rows.append(row)
            print(_line(row), flush=True)
    results = {
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} thread(s), {args.device}",
        "samples": args.samples,
        "repeats": args.repeats,
        "rows": rows,
    }
    print(f"\n{results['machine']}; {args.samples} samples per call, fastest of {args.repeats}")
    print(_markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


def _line(row: dict) -> str:
    times = ", ".join(f"{name} {ms:.2f} ms" for name, ms in row["ms_per_sample"].items())
    return f"{row['layer']} ({row['tokens_per_sample']} tokens): {times}; dense / srht {row['dense_over']['srht']:.1f}x"


def _markdown(rows: list[dict]) -> str:
    memory_columns = any("extra_peak_mb" in row for row in rows)
    header = (
        "| layer (gradient) | tokens / sample | dense ms | Kronecker ms | SRHT ms | dense / SRHT | dense / Kronecker |"
    )
    lines = [header + (" dense MB | Kronecker MB | SRHT MB |" if memory_columns else "")]
    lines.append("|---" * (7 + 3 * memory_columns) + "|")
    for row in rows:
        ms, ratio = row["ms_per_sample"], row["dense_over"]
        shape = "x".join(str(n) for n in row["gradient_shape"])
        cells = [
            f"{row['layer']} ({shape})",
            str(row["tokens_per_sample"]),
            f"{ms['rademacher']:.2f}",
            f"{ms['kronecker']:.3f}",
            f"{ms['srht']:.2f}",
            f"**{ratio['srht']:.1f}x**",
            f"{ratio['kronecker']:.0f}x",
        ]
        if memory_columns:
            peak = row.get("extra_peak_mb")
            cells += [f"{peak[name]:.0f}" if peak else "" for name in PROJECTIONS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
