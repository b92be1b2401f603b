"""Throughput of FungiTransformer against the plain embedding forward (CPU).

Measures, in one process and interleaved to cancel slow load changes on a
shared machine:

* the baseline: ``model.forward_head(model.forward_features(x), pre_logits=True)``
  under ``torch.no_grad`` on already preprocessed batches (the backbone's
  inference views, 224 x 224 for the models below);
* ``FungiTransformer(...).transform(images)`` for embedding+KL, DINO, SimCLR
  and KL+DINO+SimCLR with the ``--views`` preset (fitted beforehand; ``fit``
  is timed separately);
* the ratio of each to the baseline and to ``views x baseline``, with PASS /
  FAIL against the targets (embedding+KL <= 1.2x one forward; each loss
  <= 1.1x its views' forwards). Per-view ratios and targets assume that each
  view costs one full-size forward, as the paper's views do; the ``fast``
  preset's crops and patches are smaller, so read its ``x base`` column;
* peak RSS, and the extra peak memory and time of a dense Rademacher
  projection at ViT-B size (in a subprocess, see ``projection_child``).

``--model`` is a timm model with random weights (the cost does not depend on
them): ``vit_small_patch16_224`` (the default; target layer
``blocks.11.attn.proj``) or ``resnet50`` (``layer4.2.conv3``), or any other
timm name. timm starts each residual block's last BatchNorm at zero, which
would zero the gradient of the convolution before it; those norms get random
scales here, as trained ones have.

``--profile`` adds a breakdown of where ``transform`` spends its time (view
construction, forward, loss, backward, projection, ...) from the
``torch.profiler`` ranges the library labels its stages with
(``skfungi.monitoring.PROFILER_LABELS``), plus torch.profiler's top ops.

Usage::

    .venv/bin/python benchmarks/throughput.py --threads 1     # ~6 min idle, ~23 min on a busy 2-core CPU
    .venv/bin/python benchmarks/throughput.py --quick         # ~1.5 min smoke run
    .venv/bin/python benchmarks/throughput.py --threads 1 --model resnet50 --views fast --n-images 2 \\
        --repeats 2 --n-negatives 2 --kl-sweep '' --no-projection
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
import statistics
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from timing import (
    Elapsed,
    current_rss_mb,
    peak_rss_mb,
    process_peak_rss_mb,
    reset_peak_rss,
    stopwatch,
)

log = functools.partial(print, flush=True)

# -- projection memory / speed at ViT-B size (subprocess) ------------------------


def projection_child(rows: int, shape: tuple[int, int], n_components: int, threads: int = 0) -> dict:
    """Extra peak RSS and time of ``RademacherProjection.project`` on a (rows, D) batch.

    Method: in a fresh interpreter the input batch is allocated and touched
    first, then the kernel's RSS high-water mark is reset and the extra peak
    of the FIRST ``project`` call is ``VmHWM after - VmRSS before``. RSS sees
    every allocation (numpy, torch's CPU allocator, BLAS buffers), unlike
    tracemalloc; the first call is measured because later calls can reuse heap
    pages glibc kept from it, which RSS would not show again (so this is the
    conservative figure). Timings are then taken on warm calls: all rows, and
    one row (~ the fixed regeneration).
    """
    from skfungi import RademacherProjection

    if threads:
        torch.set_num_threads(threads)
    gradients = torch.randn(rows, shape[0] * shape[1], generator=torch.Generator().manual_seed(0))
    projection = RademacherProjection().fit(shape, n_components, 0)
    gc.collect()
    before = current_rss_mb()
    supported = reset_peak_rss()
    with stopwatch() as first:
        out = projection.project(gradients)
    peak = peak_rss_mb()
    with stopwatch() as all_rows:
        projection.project(gradients)
    with stopwatch() as one_row:
        projection.project(gradients[:1])
    assert out.shape == (rows, n_components)
    measured = supported and peak is not None and before is not None
    return {
        "rows": rows,
        "gradient_shape": list(shape),
        "gradient_dim": gradients.shape[1],
        "n_components": n_components,
        "tile_mb": 4 * n_components * projection.tile_columns / 2**20,
        "input_mb": gradients.numel() * 4 / 2**20,
        "matrix_mb_if_dense": gradients.shape[1] * n_components * 4 / 2**20,
        "rss_before_mb": before,
        "peak_after_mb": peak,
        "extra_peak_mb": peak - before if measured else None,
        "hwm_reset_supported": supported,
        "first_call_seconds": first.wall,
        "seconds": all_rows.wall,
        "seconds_per_row": all_rows.wall / rows,
        "one_row_seconds": one_row.wall,
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


# -- the model, the images and the configurations --------------------------------

CONFIG_LABELS = ("embedding+kl", "dino", "simclr", "kl+dino+simclr")
CONFIG_LOSSES = {
    "embedding+kl": ("kl",),
    "dino": ("dino",),
    "simclr": ("simclr",),
    "kl+dino+simclr": ("kl", "dino", "simclr"),
}
TARGETS = {"embedding+kl": 1.2, "dino": 1.1, "simclr": 1.1, "kl+dino+simclr": 1.1}  # x views*base, paper views


@dataclass(frozen=True)
class Config:
    """One timed configuration: its losses (made fresh by ``losses()``), whether the embedding block
    is in the output, its target (None: not checked) and, once fitted (:func:`with_passes`), the views
    each pass forwards per image."""

    label: str
    losses: Callable[[], tuple]
    include_embedding: bool
    target: float | None
    passes: tuple[int, ...] = ()

    @property
    def views(self) -> int:
        return sum(self.passes)


@dataclass
class Workload:
    """The model, its adapter, the images and their preprocessed inference views."""

    model: torch.nn.Module
    backbone: object
    train: np.ndarray  # what fit sees: the timed images and the rest of the SimCLR bank
    images: np.ndarray  # what transform sees
    inputs: torch.Tensor  # the baseline's input: the backbone's prepared inference views
    batch_size: int

    @property
    def n_images(self) -> int:
        return len(self.images)

    @property
    def inference_batch(self) -> int:
        return min(self.batch_size, self.n_images)


def random_model(name: str) -> torch.nn.Module:
    """timm ``name`` with random weights; BatchNorm scales drawn away from timm's zeros (see the docstring)."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
    return model


def random_images(n_images: int, side: int = 224) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n_images, side, side, 3), dtype=np.uint8)


def preprocess(images: np.ndarray, backbone) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> the backbone's prepared inference views (N, 3, S, S), what FUNGI's embedding sees."""
    samples = backbone.as_samples(images)
    views = torch.stack([backbone.inference_view(backbone.canonical(samples[i], i)) for i in range(len(images))])
    return backbone.prepare(views).contiguous()


def make_workload(args) -> Workload:
    from skfungi import TimmBackbone

    model = random_model(args.model)
    backbone = TimmBackbone(model)
    train = random_images(max(args.n_images, args.n_negatives))
    images = train[: args.n_images]
    return Workload(model, backbone, train, images, preprocess(images, backbone), args.batch_size)


def make_configs(views: str, n_negatives: int, only: Sequence[str] = CONFIG_LABELS) -> list[Config]:
    """The configurations named in ``only``, their losses set by the ``views`` preset."""
    from skfungi.losses import make_loss

    def losses(names: tuple[str, ...]) -> tuple:
        made = tuple(make_loss(name, views) for name in names)
        for loss in made:
            if loss.name == "simclr":
                loss.set_params(n_negatives=n_negatives)
        return made

    return [
        Config(
            label,
            functools.partial(losses, CONFIG_LOSSES[label]),
            include_embedding=CONFIG_LOSSES[label][0] == "kl",
            target=TARGETS[label] if views == "paper" else None,
        )
        for label in only
    ]


def with_passes(config: Config, fitted) -> Config:
    """``config`` with the views per image of each pass, as its fitted losses count them (KL's pass is
    the inference view, which the embedding shares)."""
    return replace(config, passes=tuple(loss.view_count(fitted.backbone_) for loss in fitted.losses_))


def transformer(work: Workload, config: Config, views: str):
    from skfungi import FungiTransformer

    return FungiTransformer(
        work.model,
        losses=config.losses(),
        include_embedding=config.include_embedding,
        views=views,
        random_state=0,
        batch_size=work.batch_size,
    )


# -- the plain forward ---------------------------------------------------------------


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


def time_baseline(work: Workload) -> Elapsed:
    """The plain forward of the timed images at the transformer's batch size."""
    with stopwatch() as elapsed:
        baseline_embed(work.model, work.inputs, work.batch_size)
    return elapsed


def tiled_inputs(work: Workload, size: int) -> torch.Tensor:
    """``size`` inference views: the timed images' repeated."""
    return work.inputs.repeat(-(-size // work.n_images), 1, 1, 1)[:size]


def time_forward(work: Workload, size: int) -> Elapsed:
    """One plain forward of ``size`` images in one batch."""
    batch = tiled_inputs(work, size)
    with stopwatch() as elapsed:
        baseline_embed(work.model, batch, size)
    return elapsed


def mean(a: Elapsed, b: Elapsed) -> Elapsed:
    return Elapsed((a.wall + b.wall) / 2, (a.cpu + b.cpu) / 2, (a.page_faults + b.page_faults) // 2)


# -- fitting -----------------------------------------------------------------------


def fit_configs(work: Workload, configs: list[Config], views: str) -> tuple[list[Config], dict, dict]:
    """Each configuration fitted on the training images: the configurations with their passes,
    ``{label: transformer}``, ``{label: seconds}``."""
    fitted, seconds = {}, {}
    for config in configs:
        fungi = transformer(work, config, views)
        with stopwatch() as elapsed:
            fungi.fit(work.train)
        fitted[config.label], seconds[config.label] = fungi, elapsed.wall
        log(f"  fit {config.label:<16} {elapsed.wall:7.2f} s")
    return [with_passes(config, fitted[config.label]) for config in configs], fitted, seconds


def bank_cost(work: Workload, n_negatives: int, fit_seconds: dict) -> dict:
    """Seconds per SimCLR negative-bank image: the SimCLR fit minus the same fit with no bank."""
    from skfungi import FungiTransformer, SimCLRLoss

    empty = FungiTransformer(
        work.model,
        losses=(SimCLRLoss(n_negatives=0),),
        include_embedding=False,
        random_state=0,
        batch_size=work.batch_size,
    )
    with stopwatch() as no_bank:
        empty.fit(work.train)
    bank_images = min(n_negatives, len(work.train))
    simclr = fit_seconds.get("simclr", float("nan"))
    per_negative = (simclr - no_bank.wall) / bank_images if bank_images else float("nan")
    log(f"  fit simclr (no bank) {no_bank.wall:7.2f} s -> {per_negative:.2f} s per negative image")
    return {"fit_simclr_no_bank_s": no_bank.wall, "per_negative_image_s": per_negative, "bank_images": bank_images}


def embedding_error(work: Workload, fitted: dict) -> float:
    """Sanity: the embedding block of FUNGI equals the baseline's normalised embedding."""
    if "embedding+kl" not in fitted:
        return float("nan")
    fungi = fitted["embedding+kl"]
    check = fungi.transform(work.images[:1])[0, : fungi.embedding_dim_]
    reference = torch.nn.functional.normalize(baseline_embed(work.model, work.inputs[:1], 1), dim=1)[0].numpy()
    return float(np.abs(check - reference).max())


# -- timing the configurations -------------------------------------------------------


def loss_pass_batches(work: Workload, configs: list[Config]) -> list[int]:
    """The forward batch sizes the loss passes use, other than the inference batch."""
    sizes = {forward_batch(views, work.batch_size, work.n_images) for config in configs for views in config.passes}
    return sorted(sizes - {work.inference_batch})


def time_transform(fungi, images) -> tuple[Elapsed, float | None]:
    """One transform, and the peak RSS during it."""
    gc.collect()
    reset_peak_rss()
    with stopwatch() as elapsed:
        fungi.transform(images)
    return elapsed, peak_rss_mb()


def matched_forwards(work: Workload, config: Config, per_image: dict[int, Elapsed]) -> Elapsed:
    """What the configuration's forwards cost as plain forwards: views x the forward per image timed
    at each pass's forward batch."""
    batches = [(views, forward_batch(views, work.batch_size, work.n_images)) for views in config.passes]
    wall = work.n_images * sum(views * per_image[size].wall for views, size in batches)
    cpu = work.n_images * sum(views * per_image[size].cpu for views, size in batches)
    return Elapsed(wall, cpu)


def record(entry: dict, elapsed: Elapsed, peak, base: Elapsed, matched: Elapsed) -> None:
    entry["wall"].append(elapsed.wall)
    entry["cpu"].append(elapsed.cpu)
    entry["ratio"].append(elapsed.wall / base.wall)
    entry["cpu_ratio"].append(elapsed.cpu / base.cpu)
    entry["matched_ratio"].append(elapsed.wall / matched.wall)
    entry["cpu_matched_ratio"].append(elapsed.cpu / matched.cpu)
    entry["peak_rss_mb"].append(peak)


def time_configs(work: Workload, configs: list[Config], fitted: dict, repeats: int) -> dict:
    """Each configuration's transform between two baseline forwards (its ratio: to their mean), and
    once per repeat the plain forward at the loss passes' batch sizes."""
    baselines = [time_baseline(work)]
    results = {config.label: defaultdict(list) for config in configs}
    forwards = defaultdict(list)  # forward batch -> plain forward per image, one per repeat
    for repeat in range(repeats):
        per_image = {}
        for size in loss_pass_batches(work, configs):
            elapsed = time_forward(work, size)
            per_image[size] = Elapsed(elapsed.wall / size, elapsed.cpu / size)
            forwards[size].append(per_image[size])
        for config in configs:
            elapsed, peak = time_transform(fitted[config.label], work.images)
            baselines.append(time_baseline(work))
            base = mean(baselines[-2], baselines[-1])
            per_image[work.inference_batch] = Elapsed(base.wall / work.n_images, base.cpu / work.n_images)
            matched = matched_forwards(work, config, per_image)
            record(results[config.label], elapsed, peak, base, matched)
            log_repeat(repeat, config, elapsed, base, matched, work.n_images)
    return {"baselines": baselines, "results": results, "forwards": forwards}


def log_repeat(repeat: int, config: Config, elapsed: Elapsed, base: Elapsed, matched: Elapsed, n_images: int):
    log(
        f"  repeat {repeat + 1} {config.label:<16} {elapsed.wall / n_images:8.3f} s/img "
        f"(baseline {base.wall / n_images:.3f})  x views*base: wall {elapsed.wall / base.wall / config.views:5.2f} "
        f"cpu {elapsed.cpu / base.cpu / config.views:5.2f}  x matched: wall {elapsed.wall / matched.wall:5.2f} "
        f"cpu {elapsed.cpu / matched.cpu:5.2f}"
    )


def summary_row(work: Workload, config: Config, entry: dict, fit_seconds: float) -> dict:
    """Medians over the repeats, per-view ratios, the verdicts against the target."""
    views, median = config.views, statistics.median
    per_view = median(entry["ratio"]) / views
    cpu_per_view = median(entry["cpu_ratio"]) / views
    peaks = [peak for peak in entry["peak_rss_mb"] if peak is not None]
    return {
        "config": config.label,
        "include_embedding": config.include_embedding,
        "views": views,
        "forward_batch": "/".join(str(forward_batch(v, work.batch_size, work.n_images)) for v in config.passes),
        "s_per_image": median(entry["wall"]) / work.n_images,
        "cpu_s_per_image": median(entry["cpu"]) / work.n_images,
        "ratio": median(entry["ratio"]),
        "ratio_per_view": per_view,
        "ratio_min": min(entry["ratio"]) / views,
        "ratio_max": max(entry["ratio"]) / views,
        "matched_ratio": median(entry["matched_ratio"]),
        "cpu_ratio_per_view": cpu_per_view,
        "cpu_ratio_min": min(entry["cpu_ratio"]) / views,
        "cpu_ratio_max": max(entry["cpu_ratio"]) / views,
        "cpu_matched_ratio": median(entry["cpu_matched_ratio"]),
        "target": config.target,
        "pass": None if config.target is None else per_view <= config.target,
        "cpu_pass": None if config.target is None else cpu_per_view <= config.target,
        "peak_rss_mb": max(peaks) if peaks else None,
        "fit_s": fit_seconds,
    }


def summarise(work: Workload, configs: list[Config], timings: dict, fit_seconds: dict) -> dict:
    baselines, forwards = timings["baselines"], timings["forwards"]
    median = statistics.median
    return {
        "baseline_s_per_image": median(b.wall for b in baselines) / work.n_images,
        "baseline_cpu_s_per_image": median(b.cpu for b in baselines) / work.n_images,
        "baseline_runs": len(baselines),
        "baseline_wall": [b.wall for b in baselines],
        "forward_s_per_image_by_batch": {
            str(size): median(e.wall for e in forwards[size]) for size in sorted(forwards)
        },
        "forward_cpu_s_per_image_by_batch": {
            str(size): median(e.cpu for e in forwards[size]) for size in sorted(forwards)
        },
        "rows": [
            summary_row(work, config, timings["results"][config.label], fit_seconds[config.label]) for config in configs
        ],
        "raw": timings["results"],
    }


def measure(args) -> dict:
    """Fit every configuration, then time each against the plain forward (and the KL sweep)."""
    work = make_workload(args)
    log(f"# fitting (SimCLR negative bank: n_negatives={args.n_negatives})")
    configs, fitted, fit_seconds = fit_configs(
        work, make_configs(args.views, args.n_negatives, args.configs), args.views
    )
    bank = bank_cost(work, args.n_negatives, fit_seconds)
    error = embedding_error(work, fitted)
    if args.warmup:
        log("# warm-up (1 image per configuration)")
        time_baseline(work)
        for fungi in fitted.values():
            fungi.transform(work.images[:1])
    log(
        f"# timing: {args.repeats} repeat(s); each configuration is timed between two baseline runs "
        f"(N={work.n_images}, batch_size={work.batch_size}); the forward at the loss passes' batch sizes "
        "is timed once per repeat"
    )
    timings = time_configs(work, configs, fitted, args.repeats)
    result = summarise(work, configs, timings, fit_seconds)
    result["kl_sweep"] = kl_sweep(args, work) if args.kl_sweep else []
    return {**result, **bank, "embedding_max_abs_error": error}


# -- embedding + KL on a stream, at several batch sizes --------------------------------


def kl_sweep(args, work: Workload) -> list[dict]:
    """embedding+KL against the embedding forward at several batch sizes, on a stream.

    Each side transforms ``max(--kl-sweep-images, batch size)`` images in batches of
    ``batch_size``, as a dataset would be: the fixed costs of a ``transform`` call (one
    regeneration of the dense projection per 64 MiB of reduced gradients) are spread as in
    real use, and the per-batch costs (the backward, the factors) are not. Cheap, since both
    sides forward one view per image.
    """
    return [kl_sweep_row(args, work.model, work.backbone, size) for size in args.kl_sweep]


def kl_sweep_row(args, model, backbone, size: int) -> dict:
    from skfungi import FungiTransformer

    n_images = max(size, args.kl_sweep_images)
    images = random_images(n_images)
    inputs = preprocess(images, backbone)
    fungi = FungiTransformer(model, losses=("kl",), random_state=0, batch_size=size).fit(images[:size])
    fungi.transform(images[:1])

    def baseline() -> Elapsed:
        with stopwatch() as elapsed:
            baseline_embed(model, inputs, size)
        return elapsed

    timing = defaultdict(list)
    before = baseline()
    for _ in range(args.repeats):
        with stopwatch() as elapsed:
            fungi.transform(images)
        after = baseline()
        base = mean(before, after)
        timing["ratio"].append(elapsed.wall / base.wall)
        timing["cpu_ratio"].append(elapsed.cpu / base.cpu)
        timing["s_per_image"].append(elapsed.wall / n_images)
        timing["baseline_s_per_image"].append(base.wall / n_images)
        timing["page_faults_per_image"].append(elapsed.page_faults / n_images)
        timing["baseline_page_faults_per_image"].append((before.page_faults + after.page_faults) / 2 / n_images)
        before = after
    row = {"variant": "library", "batch_size": size, "n_images": n_images}
    row.update({key: statistics.median(values) for key, values in timing.items()})
    for key in ("ratio", "cpu_ratio"):
        row[f"{key}_min"], row[f"{key}_max"] = min(timing[key]), max(timing[key])
    log(
        f"  kl sweep batch {size:>3} (N={n_images}): wall x{row['ratio']:.2f} "
        f"({row['ratio_min']:.2f}-{row['ratio_max']:.2f}), "
        f"cpu x{row['cpu_ratio']:.2f} ({row['cpu_ratio_min']:.2f}-{row['cpu_ratio_max']:.2f})"
    )
    return row


# -- profiling breakdown -----------------------------------------------------------


def stage_times(prof, expected: list[str]) -> dict[str, float]:
    """Seconds spent in each labelled stage (``skfungi.monitoring.PROFILER_LABELS``), summed over the
    trace's ranges (their durations on the wall clock); a stage the configuration must run but the
    trace lacks is an error."""
    totals = {event.key: event.cpu_time_total / 1e6 for event in prof.key_averages() if event.key in expected}
    missing = [label for label in expected if label not in totals]
    if missing:
        raise RuntimeError(
            f"the library reported no {missing} stage(s): its torch.profiler labels changed "
            "(skfungi.monitoring.PROFILER_LABELS); update this benchmark."
        )
    return totals


def expected_stages(config: Config) -> list[str]:
    """The labels a transform of ``config`` must show: every stage, and views unless KL runs alone
    (KL reuses the inference view)."""
    from skfungi.monitoring import PROFILER_LABELS

    stages = ["decode", "forward", "loss", "backward", "project"]
    if any(loss.name != "kl" for loss in config.losses()):
        stages.append("views")
    return [PROFILER_LABELS[stage] for stage in stages]


def plain_forwards(work: Workload, config: Config) -> Elapsed:
    """The configuration's forwards (its view counts, at its forward batch sizes) as plain forwards."""
    wall = cpu = 0.0
    for views in config.passes:
        size = forward_batch(views, work.batch_size, work.n_images)
        batch = tiled_inputs(work, size)
        with stopwatch() as elapsed:
            for _ in range(-(-work.n_images * views // size)):
                baseline_embed(work.model, batch, size)
        wall, cpu = wall + elapsed.wall, cpu + elapsed.cpu
    return Elapsed(wall, cpu)


def breakdown(work: Workload, config: Config, fungi) -> dict:
    """One profiled transform: the seconds of each stage, the rest, and the plain forwards beside it."""
    from torch.profiler import ProfilerActivity, profile

    fungi.transform(work.images[:1])  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof, stopwatch() as total:
        fungi.transform(work.images)
    parts = stage_times(prof, expected_stages(config))
    parts["other (glue, normalise blocks, numpy copy)"] = total.wall - sum(parts.values())
    plain = plain_forwards(work, config)
    return {
        "total_s": total.wall,
        "total_cpu_s": total.cpu,
        "parts": parts,
        "plain_forwards_s": plain.wall,
        "plain_forwards_cpu_s": plain.cpu,
    }


def print_breakdown(label: str, report: dict, work: Workload) -> None:
    from skfungi.monitoring import PROFILER_LABELS

    total, plain = report["total_s"], report["plain_forwards_s"]
    log(
        f"\n## breakdown: {label}  (one transform of {work.n_images} images, batch_size={work.batch_size}: "
        f"{total:.2f} s wall, {report['total_cpu_s']:.2f} s CPU)"
    )
    log(f"  {'stage (torch.profiler label)':<44} {'wall s':>8} {'wall %':>7}")
    for part, seconds in sorted(report["parts"].items(), key=lambda item: -item[1]):
        log(f"  {part:<44} {seconds:8.3f} {100 * seconds / total:6.1f}%")
    forward = report["parts"][PROFILER_LABELS["forward"]]
    log(
        f"  the same forwards as plain no-grad embedding forwards: {plain:.3f} s wall, "
        f"{report['plain_forwards_cpu_s']:.3f} s CPU; FUNGI forward / plain = {forward / plain:.2f} wall; "
        f"FUNGI total / plain = {total / plain:.2f} wall, {report['total_cpu_s'] / report['plain_forwards_cpu_s']:.2f} "
        "CPU (the profiler adds its own overhead to FUNGI's side)"
    )


def top_ops(function: Callable[[], object], rows: int) -> str:
    """torch.profiler's table of the ``rows`` ops with the most self CPU time in ``function()``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        function()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def profile(args) -> dict:
    """Time breakdown of one transform per configuration, then torch.profiler's top ops.

    After each profiled transform, the same forwards (same view counts and
    forward batch sizes) are timed as plain no-grad embedding forwards, so the
    "forward" share can be compared with what the baseline pays for them.
    """
    work = make_workload(args)
    one_batch = work.images[: max(1, work.inference_batch)]
    report = {}
    for config in make_configs(args.views, args.n_negatives, args.configs):
        fungi = transformer(work, config, args.views).fit(work.train)
        config = with_passes(config, fungi)
        report[config.label] = breakdown(work, config, fungi)
        print_breakdown(config.label, report[config.label], work)
        if args.torch_profile:
            table = top_ops(lambda fungi=fungi: fungi.transform(one_batch), args.torch_profile)
            log(table)
            report[config.label]["torch_profile"] = table
    if args.torch_profile:
        table = top_ops(
            lambda: baseline_embed(work.model, work.inputs[: len(one_batch)], work.batch_size), args.torch_profile
        )
        log(f"\n## torch.profiler: baseline embedding forward of {len(one_batch)} images\n{table}")
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


def verdict(passed: bool | None) -> str:
    return "n/a" if passed is None else ("PASS" if passed else "FAIL")


def print_preamble(args) -> None:
    print()
    print(
        f"model {args.model} (random init, pretrained=False), {args.views} views, CPU: {cpu_model()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), no GPU"
    )
    print(
        f"N={args.n_images} images, batch_size={args.batch_size}, {args.repeats} repeat(s), SimCLR bank "
        f"n_negatives={args.n_negatives}. Each ratio: median over repeats of (config time / mean of the "
        "baseline runs just before and after)."
    )
    print(
        "x views*base = (config time / baseline time) / views, the targets' metric; x matched = config time / "
        "sum over its passes of views x the embedding forward timed at that pass's forward batch. "
        "wall = elapsed time, cpu = process CPU time (robust to other processes on the machine)."
    )


def print_rows(args, result: dict) -> None:
    header = (
        f"{'configuration':<18}{'views':>6}{'fwd batch':>10}{'s/image':>9}{'x base':>8}"
        f"{'x views*base':>13}{'(min-max)':>13}{'x matched':>10}"
        f"{'cpu x v*b':>10}{'(min-max)':>13}{'cpu x mat':>10}{'target':>8}{'wall':>6}{'cpu':>6}{'peak RSS':>10}"
    )
    print(header)
    print("-" * len(header))
    base, batch = result["baseline_s_per_image"], min(args.batch_size, args.n_images)
    print(
        f"{'embedding forward':<18}{1:>6}{batch:>10}{base:>9.4f}{1.0:>8.2f}{1.0:>13.2f}{'':>13}"
        f"{1.0:>10.2f}{1.0:>10.2f}{'':>13}{1.0:>10.2f}"
    )
    for row in result["rows"]:
        rss = f"{row['peak_rss_mb']:.0f} MB" if row["peak_rss_mb"] else "n/a"
        spread = f"({row['ratio_min']:.2f}-{row['ratio_max']:.2f})"
        cpu_spread = f"({row['cpu_ratio_min']:.2f}-{row['cpu_ratio_max']:.2f})"
        target = "n/a" if row["target"] is None else "<=" + format(row["target"], ".1f") + "x"
        print(
            f"{row['config']:<18}{row['views']:>6}{row['forward_batch']:>10}{row['s_per_image']:>9.4f}"
            f"{row['ratio']:>8.2f}{row['ratio_per_view']:>13.2f}{spread:>13}{row['matched_ratio']:>10.2f}"
            f"{row['cpu_ratio_per_view']:>10.2f}{cpu_spread:>13}{row['cpu_matched_ratio']:>10.2f}{target:>8}"
            f"{verdict(row['pass']):>6}{verdict(row['cpu_pass']):>6}{rss:>10}"
        )
    print("(peak RSS = VmHWM during that configuration's transform)")
    by_batch = [f"batch {batch}: {base:.4f}"]
    by_batch += [f"batch {size}: {seconds:.4f}" for size, seconds in result["forward_s_per_image_by_batch"].items()]
    print("embedding forward, wall s/image by forward batch: " + ", ".join(by_batch))


def print_fits(result: dict) -> None:
    print()
    fits = ", ".join(f"{row['config']} {row['fit_s']:.1f} s" for row in result["rows"])
    print(f"fit (one-off, not timed above): {fits}")
    per_negative = result["per_negative_image_s"]
    print(
        f"SimCLR negative bank: {per_negative:.2f} s per negative image ({result['bank_images']} bank images "
        f"here; the paper's 256 would take ~{256 * per_negative:.0f} s, the library's 64 ~{64 * per_negative:.0f} s)"
    )


def print_kl_sweep(args, result: dict) -> None:
    for row in result["kl_sweep"]:
        print(
            f"embedding+kl ({row['variant']}) vs embedding forward at batch_size={row['batch_size']} "
            f"(N={row['n_images']}): "
            f"{row['s_per_image']:.4f} vs {row['baseline_s_per_image']:.4f} s/image = wall x{row['ratio']:.2f} "
            f"({row['ratio_min']:.2f}-{row['ratio_max']:.2f}) {verdict(row['ratio'] <= 1.2)}, "
            f"cpu x{row['cpu_ratio']:.2f} ({row['cpu_ratio_min']:.2f}-{row['cpu_ratio_max']:.2f}) "
            f"{verdict(row['cpu_ratio'] <= 1.2)} (target <=1.2x); minor page faults per image "
            f"{row['page_faults_per_image']:.0f} vs {row['baseline_page_faults_per_image']:.0f}"
        )
    if result["kl_sweep"]:
        rows = result["kl_sweep"]
        sizes = ", ".join(str(row["batch_size"]) for row in rows)
        print(
            f"embedding+KL target (<= 1.2x the embedding forward) on a stream of {rows[0]['n_images']} images, "
            f"batch_size {sizes}: {verdict(all(row['ratio'] <= 1.2 for row in rows))} (the N={args.n_images} row "
            "above also pays one projection regeneration per call)"
        )


def print_projection(projection: dict) -> None:
    extra, rows = projection["extra_peak_mb"], projection["rows"]
    marginal = (projection["seconds"] - projection["one_row_seconds"]) / max(1, rows - 1)
    shape = projection["gradient_shape"]
    print(
        f"projection {shape[0]}x{shape[1]} -> {projection['n_components']} "
        f"(dense matrix would be {projection['matrix_mb_if_dense']:.0f} MB): {rows} rows in "
        f"{projection['seconds']:.2f} s = {1000 * projection['seconds_per_row']:.1f} ms/row; 1 row alone "
        f"{projection['one_row_seconds']:.2f} s (~ the matrix regeneration), marginal {1000 * marginal:.1f} ms/row; "
        f"extra peak RSS {'n/a' if extra is None else format(extra, '.1f')} MB (target < 64 MB): "
        f"{verdict(None if extra is None else extra < 64)}"
    )


def print_report(args, result: dict, projections: list[dict]) -> None:
    print_preamble(args)
    print_rows(args, result)
    print_fits(result)
    print_kl_sweep(args, result)
    print(f"embedding block vs baseline embedding (normalised): max |diff| = {result['embedding_max_abs_error']:.2e}")
    print(f"process peak RSS (whole run; ru_maxrss and VmHWM before each reset): {process_peak_rss_mb():.0f} MB")
    for projection in projections:
        print_projection(projection)


# -- command line ---------------------------------------------------------------------


def parse_arguments(argv=None):
    from skfungi.losses import VIEW_PRESETS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-images", type=int, default=None, help="images per transform (default 4; quick 1)")
    parser.add_argument("--batch-size", type=int, default=None, help="batch_size for both (default 4; quick 1)")
    parser.add_argument(
        "--model",
        default="vit_small_patch16_224",
        help="timm model name, random weights (vit_small_patch16_224, resnet50, ...)",
    )
    parser.add_argument("--views", default="paper", choices=sorted(VIEW_PRESETS), help="view preset (default paper)")
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
    return apply_defaults(args)


def apply_defaults(args):
    """The full run's sizes, or the quick run's."""
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
    return args


def main(argv=None) -> int:
    args = parse_arguments(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    output = {"args": vars(args), "cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__}
    if not args.profile_only:
        with stopwatch() as total:
            result = measure(args)
            projections = []
            if not args.no_projection:
                log("# projection at ViT-B size, then ViT-S size (subprocesses)")
                projections.append(run_projection_child(args.projection_rows, (768, 769), 768))
                projections.append(run_projection_child(args.projection_rows, (384, 385), 384))
            print_report(args, result, projections)
        output.update(result=result, projection=projections, seconds=total.wall)
        print(f"total benchmark time {total.wall:.0f} s")
    if args.profile or args.profile_only:
        output["profile"] = profile(args)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(output, handle, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
