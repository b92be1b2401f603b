"""Throughput of FungiTransformer against the plain embedding forward (CPU).

Measures, in one process and interleaved to cancel slow load changes on a
shared machine:

* the baseline: ``model.forward_head(model.forward_features(x), pre_logits=True)``
  under ``torch.no_grad`` on already preprocessed 224 x 224 batches;
* ``FungiTransformer(...).transform(images)`` for embedding+KL, DINO, SimCLR
  and KL+DINO+SimCLR (fitted beforehand; ``fit`` is timed separately);
* the ratio of each to the baseline and to ``views x baseline``, with PASS /
  FAIL against the targets (embedding+KL <= 1.2x one forward; each loss
  <= 1.1x its views' forwards);
* peak RSS, and the extra peak memory and time of a dense Rademacher
  projection at ViT-B size (in a subprocess, see ``projection_child``).

``--profile`` adds a breakdown of where ``transform`` spends its time (view
construction, forward, backward, factor extraction, ``projection.reduce``,
``projection.project``, ...) obtained by wrapping skfungi's functions at run
time (nothing in the package is modified), plus torch.profiler's top ops.

Usage::

    .venv/bin/python benchmarks/throughput.py --threads 1     # ~6 min idle, ~23 min on a busy 2-core CPU
    .venv/bin/python benchmarks/throughput.py --quick         # ~1.5 min smoke run
    .venv/bin/python benchmarks/throughput.py --profile-only --torch-profile 12   # time breakdown only

``--threads 1`` is the robust choice on a shared machine (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np
import torch

# -- memory helpers (Linux /proc) -------------------------------------------------


def _proc_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def current_rss_mb() -> float | None:
    kb = _proc_status_kb("VmRSS")
    return None if kb is None else kb / 1024


_PEAK_BEFORE_RESETS_MB = 0.0


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM) to the current RSS (Linux >= 4.0).

    The peak reached so far is remembered first, for :func:`process_peak_rss_mb`.
    """
    global _PEAK_BEFORE_RESETS_MB
    _PEAK_BEFORE_RESETS_MB = max(_PEAK_BEFORE_RESETS_MB, peak_rss_since_reset_mb() or 0.0)
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_since_reset_mb() -> float | None:
    kb = _proc_status_kb("VmHWM")
    return None if kb is None else kb / 1024


def process_peak_rss_mb() -> float:
    """Peak RSS of the whole run: ``ru_maxrss``, and the high-water marks seen before each reset.

    (Resetting VmHWM also resets what ``ru_maxrss`` reports for a live process.)
    """
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return max(maxrss, _PEAK_BEFORE_RESETS_MB, peak_rss_since_reset_mb() or 0.0)


# -- projection memory / speed at ViT-B size (subprocess) ------------------------


def projection_child(rows: int, shape: tuple[int, int], n_components: int, threads: int = 0) -> dict:
    """Extra peak RSS and time of ``RademacherProjection.project`` on a (rows, D) batch.

    Method: in a fresh interpreter the input batch is allocated and touched
    first, then the kernel's RSS high-water mark is reset
    (``/proc/self/clear_refs`` <- 5) and the extra peak of the FIRST ``project``
    call is ``VmHWM after - VmRSS before``. RSS sees every allocation (numpy,
    torch's CPU allocator, BLAS buffers), unlike tracemalloc; the first call is
    measured because later calls can reuse heap pages glibc kept from it, which
    RSS would not show again (so this is the conservative figure). Timings are
    then taken on warm calls: all rows, and one row (~ the fixed regeneration).
    """
    from skfungi import RademacherProjection

    if threads:
        torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    dim = shape[0] * shape[1]
    gradients = torch.randn(rows, dim, generator=generator)
    projection = RademacherProjection().fit(shape, n_components, 0)
    gc.collect()
    before = current_rss_mb()
    supported = reset_peak_rss()
    start = time.perf_counter()
    out = projection.project(gradients)
    first_s = time.perf_counter() - start
    peak = peak_rss_since_reset_mb()
    start = time.perf_counter()
    projection.project(gradients)
    elapsed = time.perf_counter() - start
    start = time.perf_counter()
    projection.project(gradients[:1])
    one_row_s = time.perf_counter() - start
    assert out.shape == (rows, n_components)
    return {
        "rows": rows,
        "gradient_shape": list(shape),
        "gradient_dim": dim,
        "n_components": n_components,
        "tile_mb": 4 * n_components * projection.tile_columns / 2**20,
        "input_mb": gradients.numel() * 4 / 2**20,
        "matrix_mb_if_dense": dim * n_components * 4 / 2**20,
        "rss_before_mb": before,
        "peak_after_mb": peak,
        "extra_peak_mb": (peak - before) if (supported and peak is not None and before is not None) else None,
        "hwm_reset_supported": supported,
        "first_call_seconds": first_s,
        "seconds": elapsed,
        "seconds_per_row": elapsed / rows,
        "one_row_seconds": one_row_s,
    }


def run_projection_child(rows: int, shape: tuple[int, int] = (768, 769), n_components: int = 768) -> dict:
    """:func:`projection_child` in a fresh interpreter, so that nothing else shares its heap."""
    here = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import json, sys; sys.path.insert(0, {here!r}); import throughput as t; "
        f"print('RESULT ' + json.dumps(t.projection_child({rows}, {tuple(shape)!r}, {n_components}, "
        f"{torch.get_num_threads()})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"projection subprocess failed:\n{done.stdout}\n{done.stderr}")


# -- the throughput measurement --------------------------------------------------


class Clock:
    """Wall and process-CPU seconds of a block, and its minor page faults (memory the
    allocator got fresh from the kernel: each costs system time)."""

    def __init__(self):
        self.wall = self.cpu = 0.0
        self.page_faults = 0

    @contextmanager
    def measure(self):
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        wall, cpu = time.perf_counter(), time.process_time()
        yield self
        self.wall = time.perf_counter() - wall
        self.cpu = time.process_time() - cpu
        self.page_faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


CONFIG_LABELS = ("embedding+kl", "dino", "simclr", "kl+dino+simclr")


def make_configs(n_negatives: int, only: Sequence[str] = CONFIG_LABELS):
    from skfungi import SimCLRLoss

    def simclr():
        return SimCLRLoss(n_negatives=n_negatives)

    # (label, losses factory, include_embedding, forwarded views per image by pass, target multiple)
    configs = [
        ("embedding+kl", lambda: ("kl",), True, (1,), 1.2),
        ("dino", lambda: ("dino",), False, (12,), 1.1),
        ("simclr", lambda: (simclr(),), False, (49,), 1.1),
        ("kl+dino+simclr", lambda: ("kl", "dino", simclr()), True, (1, 12, 49), 1.1),
    ]
    return [config for config in configs if config[0] in only]


def forward_batch(views: int, batch_size: int, n_images: int) -> int:
    """Images per forward in FeatureExtractor for a pass with ``views`` views per sample.

    The inference pass forwards a batch of ``batch_size`` samples; a loss pass
    the views of ``max(1, batch_size // views)`` whole samples, at most
    ``batch_size`` views per forward.
    """
    samples = min(batch_size, n_images)
    if views == 1:
        return samples
    return min(batch_size, views * min(samples, max(1, batch_size // views)))


def baseline_embed(model, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            x = inputs[start : start + batch_size]
            out.append(model.forward_head(model.forward_features(x), pre_logits=True))
    return torch.cat(out)


def preprocess(images: np.ndarray, backbone) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> the backbone's prepared inference views (N, 3, S, S), what FUNGI's embedding sees."""
    samples = backbone.as_samples(images)
    views = torch.stack([backbone.inference_view(backbone.canonical(samples[i], i)) for i in range(len(images))])
    return backbone.prepare(views).contiguous()


def measure(args) -> dict:
    import timm

    from skfungi import FungiTransformer, SimCLRLoss, TimmBackbone

    rng = np.random.default_rng(0)
    # fit() sees the timed images plus extra ones so that the SimCLR bank has n_negatives images
    train = rng.integers(0, 256, (max(args.n_images, args.n_negatives), 224, 224, 3), dtype=np.uint8)
    images = train[: args.n_images]
    torch.manual_seed(0)
    model = timm.create_model(args.model, pretrained=False).eval()
    backbone = TimmBackbone(model)
    inputs = preprocess(images, backbone)
    B = args.batch_size
    n_images = args.n_images
    log = functools.partial(print, flush=True)

    def time_baseline() -> Clock:
        clock = Clock()
        with clock.measure():
            baseline_embed(model, inputs, B)
        return clock

    def time_forward(size: int) -> Clock:
        """One no-grad embedding forward of ``size`` images (the inputs tiled)."""
        batch = inputs.repeat(-(-size // n_images), 1, 1, 1)[:size]
        clock = Clock()
        with clock.measure():
            baseline_embed(model, batch, size)
        return clock

    log(f"# fitting (SimCLR negative bank: n_negatives={args.n_negatives})")
    fitted, fit_times = {}, {}
    configs = make_configs(args.n_negatives, args.configs)
    for label, losses, include_embedding, _, _ in configs:
        transformer = FungiTransformer(
            model, losses=losses(), include_embedding=include_embedding, random_state=0, batch_size=B
        )
        clock = Clock()
        with clock.measure():
            transformer.fit(train)
        fitted[label], fit_times[label] = transformer, clock.wall
        log(f"  fit {label:<16} {clock.wall:7.2f} s")
    # per-negative-image cost of the bank: fit with the bank minus fit without it
    empty = FungiTransformer(
        model, losses=(SimCLRLoss(n_negatives=0),), include_embedding=False, random_state=0, batch_size=B
    )
    clock = Clock()
    with clock.measure():
        empty.fit(train)
    fit_no_bank = clock.wall
    bank_images = min(args.n_negatives, len(train))
    simclr_fit = fit_times.get("simclr", float("nan"))
    per_negative = (simclr_fit - fit_no_bank) / bank_images if bank_images else float("nan")
    log(f"  fit simclr (no bank) {fit_no_bank:7.2f} s -> {per_negative:.2f} s per negative image")

    # sanity: the embedding block of FUNGI equals the baseline's normalised embedding
    embedding_error = float("nan")
    if "embedding+kl" in fitted:
        check = fitted["embedding+kl"].transform(images[:1])[0, : fitted["embedding+kl"].embedding_dim_]
        reference = torch.nn.functional.normalize(baseline_embed(model, inputs[:1], B), dim=1)[0].numpy()
        embedding_error = float(np.abs(check - reference).max())

    if args.warmup:
        log("# warm-up (1 image per configuration)")
        time_baseline()
        for label, *_ in configs:
            fitted[label].transform(images[:1])

    baseline_wall, baseline_cpu = [], []
    keys = ("wall", "cpu", "ratio", "cpu_ratio", "matched_ratio", "cpu_matched_ratio", "peak_rss_mb")
    results = {label: {key: [] for key in keys} for label, *_ in configs}
    matched_per_image, matched_cpu_per_image = defaultdict(list), defaultdict(list)
    log(
        f"# timing: {args.repeats} repeat(s); each configuration is timed between two baseline runs "
        f"(N={n_images}, batch_size={B}); the forward at the loss passes' batch sizes is timed once per repeat"
    )
    previous = time_baseline()
    baseline_wall.append(previous.wall)
    baseline_cpu.append(previous.cpu)
    sizes = {forward_batch(views, B, n_images) for *_, passes, _ in configs for views in passes}
    sizes.discard(min(B, n_images))
    for repeat in range(args.repeats):
        # the embedding forward at the other forward batches the loss passes use (once per repeat)
        measured = {size: time_forward(size) for size in sorted(sizes)}
        for size, clock in measured.items():
            matched_per_image[size].append(clock.wall / size)
            matched_cpu_per_image[size].append(clock.cpu / size)
        for label, _, _, passes, _ in configs:
            gc.collect()
            reset_peak_rss()
            clock = Clock()
            with clock.measure():
                fitted[label].transform(images)
            peak = peak_rss_since_reset_mb()
            after = time_baseline()
            baseline_wall.append(after.wall)
            baseline_cpu.append(after.cpu)
            base_wall = (previous.wall + after.wall) / 2
            base_cpu = (previous.cpu + after.cpu) / 2
            wall_per_image = {size: c.wall / size for size, c in measured.items()}
            cpu_per_image = {size: c.cpu / size for size, c in measured.items()}
            wall_per_image[min(B, n_images)] = base_wall / n_images
            cpu_per_image[min(B, n_images)] = base_cpu / n_images
            batches = [(views, forward_batch(views, B, n_images)) for views in passes]
            expected_wall = n_images * sum(views * wall_per_image[size] for views, size in batches)
            expected_cpu = n_images * sum(views * cpu_per_image[size] for views, size in batches)
            entry = results[label]
            entry["wall"].append(clock.wall)
            entry["cpu"].append(clock.cpu)
            entry["ratio"].append(clock.wall / base_wall)
            entry["cpu_ratio"].append(clock.cpu / base_cpu)
            entry["matched_ratio"].append(clock.wall / expected_wall)
            entry["cpu_matched_ratio"].append(clock.cpu / expected_cpu)
            entry["peak_rss_mb"].append(peak)
            views = sum(passes)
            log(
                f"  repeat {repeat + 1} {label:<16} {clock.wall / n_images:8.3f} s/img "
                f"(baseline {base_wall / n_images:.3f})  x views*base: wall {clock.wall / base_wall / views:5.2f} "
                f"cpu {clock.cpu / base_cpu / views:5.2f}  x matched: wall {clock.wall / expected_wall:5.2f} "
                f"cpu {clock.cpu / expected_cpu:5.2f}"
            )
            previous = after

    rows = []
    for label, _, include_embedding, passes, target in configs:
        entry = results[label]
        views = sum(passes)
        per_view = statistics.median(entry["ratio"]) / views
        cpu_per_view = statistics.median(entry["cpu_ratio"]) / views
        peaks = [p for p in entry["peak_rss_mb"] if p is not None]
        rows.append(
            {
                "config": label,
                "include_embedding": include_embedding,
                "views": views,
                "forward_batch": "/".join(str(forward_batch(v, B, n_images)) for v in passes),
                "s_per_image": statistics.median(entry["wall"]) / n_images,
                "cpu_s_per_image": statistics.median(entry["cpu"]) / n_images,
                "ratio": statistics.median(entry["ratio"]),
                "ratio_per_view": per_view,
                "ratio_min": min(entry["ratio"]) / views,
                "ratio_max": max(entry["ratio"]) / views,
                "matched_ratio": statistics.median(entry["matched_ratio"]),
                "cpu_ratio_per_view": cpu_per_view,
                "cpu_ratio_min": min(entry["cpu_ratio"]) / views,
                "cpu_ratio_max": max(entry["cpu_ratio"]) / views,
                "cpu_matched_ratio": statistics.median(entry["cpu_matched_ratio"]),
                "target": target,
                "pass": per_view <= target,
                "cpu_pass": cpu_per_view <= target,
                "peak_rss_mb": max(peaks) if peaks else None,
                "fit_s": fit_times[label],
            }
        )
    sweep = kl_sweep(args, model, backbone, log) if args.kl_sweep else []
    return {
        "kl_sweep": sweep,
        "baseline_s_per_image": statistics.median(baseline_wall) / n_images,
        "baseline_cpu_s_per_image": statistics.median(baseline_cpu) / n_images,
        "baseline_runs": len(baseline_wall),
        "forward_s_per_image_by_batch": {
            str(size): statistics.median(values) for size, values in sorted(matched_per_image.items())
        },
        "forward_cpu_s_per_image_by_batch": {
            str(size): statistics.median(values) for size, values in sorted(matched_cpu_per_image.items())
        },
        "rows": rows,
        "fit_simclr_no_bank_s": fit_no_bank,
        "per_negative_image_s": per_negative,
        "bank_images": bank_images,
        "embedding_max_abs_error": embedding_error,
        "raw": results,
        "baseline_wall": baseline_wall,
    }


def kl_sweep(args, model, backbone, log) -> list[dict]:
    """embedding+KL against the embedding forward at several batch sizes, on a stream.

    Each side transforms ``max(--kl-sweep-images, batch size)`` images in batches of
    ``batch_size``, as a dataset would be: the fixed costs of a ``transform`` call (one
    regeneration of the dense projection per 64 MiB of reduced gradients) are spread as in
    real use, and the per-batch costs (the backward, the factors) are not. Cheap, since both
    sides forward one view per image.
    """
    from skfungi import FungiTransformer

    variants = ["library"]
    rows = []
    for size in args.kl_sweep:
        n_images = max(size, args.kl_sweep_images)
        images = np.random.default_rng(0).integers(0, 256, (n_images, 224, 224, 3), dtype=np.uint8)
        inputs = preprocess(images, backbone)
        transformer = FungiTransformer(model, losses=("kl",), random_state=0, batch_size=size).fit(images[:size])
        transformer.transform(images[:1])
        timings = {variant: defaultdict(list) for variant in variants}
        before = Clock()
        with before.measure():
            baseline_embed(model, inputs, size)
        for _ in range(args.repeats):
            for variant in variants:
                clock, after = Clock(), Clock()
                with clock.measure():
                    transformer.transform(images)
                with after.measure():
                    baseline_embed(model, inputs, size)
                base = (before.wall + after.wall) / 2
                timing = timings[variant]
                timing["ratio"].append(clock.wall / base)
                timing["cpu_ratio"].append(clock.cpu / ((before.cpu + after.cpu) / 2))
                timing["s_per_image"].append(clock.wall / n_images)
                timing["baseline_s_per_image"].append(base / n_images)
                timing["page_faults_per_image"].append(clock.page_faults / n_images)
                timing["baseline_page_faults_per_image"].append((before.page_faults + after.page_faults) / 2 / n_images)
                before = after
        for variant, timing in timings.items():
            row = {"variant": variant, "batch_size": size, "n_images": n_images}
            row.update({key: statistics.median(values) for key, values in timing.items()})
            for key in ("ratio", "cpu_ratio"):
                row[f"{key}_min"], row[f"{key}_max"] = min(timing[key]), max(timing[key])
            log(
                f"  kl sweep batch {size:>3} (N={n_images}, {variant}): wall x{row['ratio']:.2f} "
                f"({row['ratio_min']:.2f}-{row['ratio_max']:.2f}), "
                f"cpu x{row['cpu_ratio']:.2f} ({row['cpu_ratio_min']:.2f}-{row['cpu_ratio_max']:.2f})"
            )
            rows.append(row)
    return rows


# -- profiling breakdown -----------------------------------------------------------


def stage_times(prof, expected: list[str]) -> dict[str, float]:
    """Seconds spent in each labelled stage of the engine (``skfungi._engine.extractor.LABELS``), summed
    over the trace's ranges (their durations on the wall clock); a stage the configuration must run
    but the trace lacks is an error."""
    totals = {event.key: event.cpu_time_total / 1e6 for event in prof.key_averages() if event.key in expected}
    missing = [label for label in expected if label not in totals]
    if missing:
        raise RuntimeError(
            f"the engine reported no {missing} stage(s): its torch.profiler labels changed "
            "(skfungi._engine.extractor.LABELS); update this benchmark."
        )
    return totals


def profile(args) -> dict:
    """Exclusive-time breakdown of one transform per configuration, then torch.profiler top ops.

    After each instrumented transform, the same forwards (same view counts and
    forward batch sizes) are timed as plain no-grad embedding forwards, so the
    "forward" share can be compared with what the baseline pays for them.
    """
    import timm
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from skfungi import FungiTransformer, TimmBackbone
    from skfungi._engine.extractor import LABELS

    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (max(args.n_images, args.n_negatives), 224, 224, 3), dtype=np.uint8)
    images = train[: args.n_images]
    torch.manual_seed(0)
    model = timm.create_model(args.model, pretrained=False).eval()
    inputs = preprocess(images, TimmBackbone(model))
    B, N = args.batch_size, args.n_images
    report = {}
    for label, losses, include_embedding, passes, _ in make_configs(args.n_negatives, args.configs):
        transformer = FungiTransformer(
            model, losses=losses(), include_embedding=include_embedding, random_state=0, batch_size=B
        ).fit(train)
        transformer.transform(images[:1])  # warm-up
        with_views = any(getattr(loss, "name", loss) != "kl" for loss in losses())  # KL reuses the inference view
        stages = ["decode", "forward", "loss", "backward", "project"] + (["views"] if with_views else [])
        expected = [LABELS[stage] for stage in stages]
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            start, start_cpu = time.perf_counter(), time.process_time()
            transformer.transform(images)
            total, total_cpu = time.perf_counter() - start, time.process_time() - start_cpu
        parts = stage_times(prof, expected)
        plain = plain_cpu = 0.0
        for views in passes:
            size = forward_batch(views, B, N)
            batch = inputs.repeat(-(-size // N), 1, 1, 1)[:size]
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(-(-N * views // size)):
                baseline_embed(model, batch, size)
            plain += time.perf_counter() - start
            plain_cpu += time.process_time() - start_cpu
        other = "other (glue, normalise blocks, numpy copy)"
        parts[other] = total - sum(parts.values())
        forward = parts[LABELS["forward"]]
        report[label] = {
            "total_s": total,
            "total_cpu_s": total_cpu,
            "parts": parts,
            "plain_forwards_s": plain,
            "plain_forwards_cpu_s": plain_cpu,
        }
        print(
            f"\n## breakdown: {label}  (one transform of {N} images, batch_size={B}: "
            f"{total:.2f} s wall, {total_cpu:.2f} s CPU)",
            flush=True,
        )
        print(f"  {'stage (torch.profiler label)':<44} {'wall s':>8} {'wall %':>7}")
        for part, seconds in sorted(parts.items(), key=lambda item: -item[1]):
            print(f"  {part:<44} {seconds:8.3f} {100 * seconds / total:6.1f}%", flush=True)
        print(
            f"  the same forwards as plain no-grad embedding forwards: {plain:.3f} s wall, {plain_cpu:.3f} s CPU; "
            f"FUNGI forward / plain = {forward / plain:.2f} wall; "
            f"FUNGI total / plain = {total / plain:.2f} wall, {total_cpu / plain_cpu:.2f} CPU "
            "(the profiler adds its own overhead to FUNGI's side)",
            flush=True,
        )
        if args.torch_profile:
            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                transformer.transform(images[: max(1, min(B, N))])
            table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.torch_profile)
            print(table, flush=True)
            report[label]["torch_profile"] = table
    if args.torch_profile:
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            baseline_embed(model, inputs[: max(1, min(B, N))], B)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.torch_profile)
        print(f"\n## torch.profiler: baseline embedding forward of {min(B, N)} images\n{table}", flush=True)
        report["baseline_torch_profile"] = table
    return report


# -- printing --------------------------------------------------------------------


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def print_table(args, result: dict, projections: list[dict] | None) -> None:
    B, N = args.batch_size, args.n_images
    base = result["baseline_s_per_image"]
    print()
    print(
        f"model {args.model} (random init, pretrained=False), 224 px, CPU: {cpu_model()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), no GPU"
    )
    print(
        f"N={N} images, batch_size={B}, {args.repeats} repeat(s), SimCLR bank n_negatives={args.n_negatives}. "
        "Each ratio: median over repeats of (config time / mean of the baseline runs just before and after)."
    )
    print(
        "x views*base = (config time / baseline time) / views, the targets' metric; x matched = config time / "
        "sum over its passes of views x the embedding forward timed at that pass's forward batch. "
        "wall = elapsed time, cpu = process CPU time (robust to other processes on the machine)."
    )
    header = (
        f"{'configuration':<18}{'views':>6}{'fwd batch':>10}{'s/image':>9}{'x base':>8}"
        f"{'x views*base':>13}{'(min-max)':>13}{'x matched':>10}"
        f"{'cpu x v*b':>10}{'(min-max)':>13}{'cpu x mat':>10}{'target':>8}{'wall':>6}{'cpu':>6}{'peak RSS':>10}"
    )
    print(header)
    print("-" * len(header))
    print(
        f"{'embedding forward':<18}{1:>6}{min(B, N):>10}{base:>9.4f}{1.0:>8.2f}{1.0:>13.2f}{'':>13}"
        f"{1.0:>10.2f}{1.0:>10.2f}{'':>13}{1.0:>10.2f}"
    )
    for row in result["rows"]:
        rss = f"{row['peak_rss_mb']:.0f} MB" if row["peak_rss_mb"] else "n/a"
        spread = f"({row['ratio_min']:.2f}-{row['ratio_max']:.2f})"
        cpu_spread = f"({row['cpu_ratio_min']:.2f}-{row['cpu_ratio_max']:.2f})"
        target = "<=" + format(row["target"], ".1f") + "x"
        print(
            f"{row['config']:<18}{row['views']:>6}{row['forward_batch']:>10}{row['s_per_image']:>9.4f}"
            f"{row['ratio']:>8.2f}{row['ratio_per_view']:>13.2f}{spread:>13}{row['matched_ratio']:>10.2f}"
            f"{row['cpu_ratio_per_view']:>10.2f}{cpu_spread:>13}{row['cpu_matched_ratio']:>10.2f}{target:>8}"
            f"{'PASS' if row['pass'] else 'FAIL':>6}{'PASS' if row['cpu_pass'] else 'FAIL':>6}{rss:>10}"
        )
    print("(peak RSS = VmHWM during that configuration's transform)")
    by_batch = [f"batch {min(B, N)}: {base:.4f}"]
    by_batch += [f"batch {size}: {seconds:.4f}" for size, seconds in result["forward_s_per_image_by_batch"].items()]
    print("embedding forward, wall s/image by forward batch: " + ", ".join(by_batch))
    print()
    fits = ", ".join(f"{row['config']} {row['fit_s']:.1f} s" for row in result["rows"])
    print(f"fit (one-off, not timed above): {fits}")
    print(
        f"SimCLR negative bank: {result['per_negative_image_s']:.2f} s per negative image "
        f"({result['bank_images']} bank images here; the paper's 256 would take "
        f"~{256 * result['per_negative_image_s']:.0f} s, the library's 64 ~{64 * result['per_negative_image_s']:.0f} s)"
    )
    for row in result.get("kl_sweep", []):
        print(
            f"embedding+kl ({row['variant']}) vs embedding forward at batch_size={row['batch_size']} "
            f"(N={row['n_images']}): "
            f"{row['s_per_image']:.4f} vs {row['baseline_s_per_image']:.4f} s/image = wall x{row['ratio']:.2f} "
            f"({row['ratio_min']:.2f}-{row['ratio_max']:.2f}) {'PASS' if row['ratio'] <= 1.2 else 'FAIL'}, "
            f"cpu x{row['cpu_ratio']:.2f} ({row['cpu_ratio_min']:.2f}-{row['cpu_ratio_max']:.2f}) "
            f"{'PASS' if row['cpu_ratio'] <= 1.2 else 'FAIL'} (target <=1.2x); minor page faults per image "
            f"{row['page_faults_per_image']:.0f} vs {row['baseline_page_faults_per_image']:.0f}"
        )
    library = [row for row in result.get("kl_sweep", []) if row["variant"] == "library"]
    if library:
        verdict = "PASS" if all(row["ratio"] <= 1.2 for row in library) else "FAIL"
        sizes = ", ".join(str(row["batch_size"]) for row in library)
        print(
            f"embedding+KL target (<= 1.2x the embedding forward) on a stream of {library[0]['n_images']} images, "
            f"batch_size {sizes}: {verdict} (the N={N} row above also pays one projection regeneration per call)"
        )
    print(f"embedding block vs baseline embedding (normalised): max |diff| = {result['embedding_max_abs_error']:.2e}")
    print(f"process peak RSS (whole run; ru_maxrss and VmHWM before each reset): {process_peak_rss_mb():.0f} MB")
    for proj in projections or []:
        extra = proj["extra_peak_mb"]
        verdict = "n/a" if extra is None else ("PASS" if extra < 64 else "FAIL")
        rows = proj["rows"]
        marginal = (proj["seconds"] - proj["one_row_seconds"]) / max(1, rows - 1)
        print(
            f"projection {proj['gradient_shape'][0]}x{proj['gradient_shape'][1]} -> {proj['n_components']} "
            f"(dense matrix would be {proj['matrix_mb_if_dense']:.0f} MB): {rows} rows in {proj['seconds']:.2f} s = "
            f"{1000 * proj['seconds_per_row']:.1f} ms/row; 1 row alone {proj['one_row_seconds']:.2f} s "
            f"(~ the matrix regeneration), marginal {1000 * marginal:.1f} ms/row; extra peak RSS "
            f"{'n/a' if extra is None else format(extra, '.1f')} MB (target < 64 MB): {verdict}"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-images", type=int, default=None, help="images per transform (default 4; quick 1)")
    parser.add_argument("--batch-size", type=int, default=None, help="batch_size for both (default 4; quick 1)")
    parser.add_argument("--model", default="vit_small_patch16_224", help="timm model name (random init)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3; quick 1)")
    parser.add_argument("--n-negatives", type=int, default=None, help="SimCLR bank images (default 8; quick 1)")
    parser.add_argument("--projection-rows", type=int, default=None, help="rows projected at ViT-B size (96)")
    parser.add_argument("--no-projection", action="store_true", help="skip the ViT-B projection measurement")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip the 1-image warm-ups")
    parser.add_argument("--quick", action="store_true", help="~1 minute smoke run")
    parser.add_argument("--profile", action="store_true", help="add a time breakdown per configuration")
    parser.add_argument("--profile-only", action="store_true", help="only the breakdown (no timing table)")
    parser.add_argument(
        "--torch-profile",
        type=int,
        default=0,
        metavar="ROWS",
        help="with --profile: also print torch.profiler's top ROWS ops per configuration",
    )
    parser.add_argument(
        "--kl-sweep",
        default=None,
        help="comma-separated batch sizes for an extra embedding+KL vs embedding comparison (default 8,32; quick none)",
    )
    parser.add_argument(
        "--kl-sweep-images",
        type=int,
        default=64,
        help="images each side of the KL sweep transforms (at least the batch size; default 64)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument(
        "--configs",
        default=",".join(CONFIG_LABELS),
        help=f"comma-separated configurations to time (default all: {','.join(CONFIG_LABELS)})",
    )
    parser.add_argument("--json", help="write all measurements to this JSON file")
    args = parser.parse_args(argv)
    args.configs = tuple(label.strip() for label in args.configs.split(","))
    unknown = sorted(set(args.configs) - set(CONFIG_LABELS))
    if unknown:
        parser.error(f"unknown --configs {unknown}; choose from {', '.join(CONFIG_LABELS)}")
    quick = args.quick
    args.n_images = args.n_images or (1 if quick else 4)
    args.batch_size = args.batch_size or (1 if quick else 4)
    args.repeats = args.repeats or (1 if quick else 3)
    args.n_negatives = args.n_negatives if args.n_negatives is not None else (1 if quick else 8)
    args.projection_rows = args.projection_rows or (8 if quick else 96)
    if args.kl_sweep is None:
        args.kl_sweep = "" if quick else "8,32"
    args.kl_sweep = [int(size) for size in args.kl_sweep.split(",") if size.strip()]
    if quick:
        args.warmup = False
    if args.threads:
        torch.set_num_threads(args.threads)

    output = {"args": vars(args), "cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__}
    if not args.profile_only:
        started = time.perf_counter()
        result = measure(args)
        proj = []
        if not args.no_projection:
            print("# projection at ViT-B size, then ViT-S size (subprocesses)", flush=True)
            proj.append(run_projection_child(args.projection_rows, (768, 769), 768))
            proj.append(run_projection_child(args.projection_rows, (384, 385), 384))
        print_table(args, result, proj)
        output.update(result=result, projection=proj, seconds=time.perf_counter() - started)
        print(f"total benchmark time {time.perf_counter() - started:.0f} s")
    if args.profile or args.profile_only:
        output["profile"] = profile(args)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(output, handle, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
