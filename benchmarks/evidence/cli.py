"""Evidence on real pretrained models: the paper's protocols, every loss combination, with controls.

The command line of ``benchmarks/accuracy.py``::

    .venv/bin/python benchmarks/accuracy.py                 # full run, ~40 min on 2 idle cores
    .venv/bin/python benchmarks/accuracy.py --quick         # ~5 min subset
    .venv/bin/python benchmarks/accuracy.py --pairs text audio --plot docs/accuracy_few_shot.png

``make accuracy`` installs the assets and runs the full benchmark. Each pair runs through
:func:`skfungi.evaluation.evaluate` (see :mod:`.harness`). Options that build the built-in pairs
(sizes, ``--views``, ``--image-size``, ...) are refused for pairs passed from Python
(``main(pairs=...)``), which carry their own; ``--projection`` applies to every pair. Without it,
each pair keeps its own projection: the built-in pairs the dense ``rademacher`` matrix their
tables were measured with, any other pair FungiTransformer's default (SRHT).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from skfungi.losses import VIEW_PRESETS
from skfungi.projection import PROJECTIONS

from ..timing import stopwatch
from .data import PAIR_BUILDERS, QUICK_SIZES, MissingAssetError, Pair
from .harness import run_pair
from .report import format_result, plot_few_shot, report_from


def build_pairs(names: Sequence[str], quick: bool, pair_options: dict) -> tuple[list[Pair], list[MissingAssetError]]:
    """Build the named pairs; missing assets are collected, not raised, so that all are reported."""
    unknown = [name for name in names if name not in PAIR_BUILDERS]
    if unknown:
        raise SystemExit(
            f"benchmarks/accuracy.py: unknown pair(s) {', '.join(unknown)}; the pairs are {', '.join(PAIR_BUILDERS)} "
            "(benchmarks.evidence.data.register_pair adds one)."
        )
    pairs, missing = [], []
    for name in names:
        options = dict(QUICK_SIZES.get(name, {})) if quick else {}
        options.update({key: value for key, value in pair_options.get(name, {}).items() if value is not None})
        try:
            pairs.append(PAIR_BUILDERS[name](**options))
        except MissingAssetError as error:
            missing.append(error)
    if importlib.util.find_spec("matplotlib") is None:
        missing.append(MissingAssetError("matplotlib (the few-shot plot)", "pip install matplotlib"))
    return pairs, missing


# the options that build the built-in pairs: a pair passed from Python carries its own
BUILDER_OPTIONS = (
    "vision_train", "vision_test", "text_train", "text_test", "text_views", "audio_per_language", "audio_views",
    "image_size", "views", "local_crops", "simclr_grid",
)  # fmt: skip


def refused_for_given_pairs(args: argparse.Namespace) -> list[str]:
    """The builder options given on the command line (they cannot apply to pairs passed from Python)."""
    return [f"--{name.replace('_', '-')}" for name in BUILDER_OPTIONS if getattr(args, name) is not None]


def pair_options(args: argparse.Namespace) -> dict:
    """Each pair builder's keyword arguments from the command line (None: the builder's default)."""
    return {
        "vision": {
            "n_train": args.vision_train,
            "n_test": args.vision_test,
            "image_size": args.image_size,
            "projection": args.projection,
            "n_local_crops": args.local_crops,
            "simclr_grid": args.simclr_grid,
            "views": args.views,
        },
        "text": {
            "n_train": args.text_train,
            "n_test": args.text_test,
            "n_views": args.text_views,
            "projection": args.projection,
        },
        "audio": {"per_language": args.audio_per_language, "n_views": args.audio_views, "projection": args.projection},
        **{name: {"projection": args.projection} for name in PAIR_BUILDERS if name not in ("vision", "text", "audio")},
    }


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The options of ``benchmarks/accuracy.py``."""
    parser = argparse.ArgumentParser(
        prog="benchmarks/accuracy.py", description=__doc__.splitlines()[0], add_help=add_help
    )
    parser.add_argument(
        "--pairs",
        nargs="+",
        default=["vision", "text", "audio"],
        metavar="NAME",
        help=f"pairs to run (default: {' '.join(PAIR_BUILDERS)}; benchmarks.evidence.data.register_pair adds more)",
    )
    parser.add_argument("--quick", action="store_true", help="small pools and 3 splits (about 5 minutes)")
    parser.add_argument("--splits", type=int, default=None, help="random stratified splits (default 5; quick 3)")
    parser.add_argument("--probe-splits", type=int, default=None, help="splits with linear probe + k-means (default 3)")
    parser.add_argument("--vision-train", type=int, default=None, help="vision training images per split (5000)")
    parser.add_argument("--vision-test", type=int, default=None, help="vision test images per split (2000)")
    parser.add_argument("--text-train", type=int, default=None, help="text training texts per split (3000)")
    parser.add_argument("--text-test", type=int, default=None, help="text test texts per split (1500)")
    parser.add_argument("--text-views", type=int, default=None, help="SimCLR views per text (4; the paper's 12)")
    parser.add_argument("--audio-per-language", type=int, default=None, help="clips per language (120)")
    parser.add_argument("--audio-views", type=int, default=None, help="SimCLR views per clip (16, the paper's)")
    parser.add_argument("--image-size", type=int, default=None, help="MobileNetV2 input side in pixels (default 32)")
    parser.add_argument(
        "--projection",
        choices=sorted(PROJECTIONS),
        default=None,
        help="every pair's projection (default: each pair's own: rademacher for the built-in pairs, whose tables "
        "were measured with it; FungiTransformer's srht for a pair passed from Python)",
    )
    parser.add_argument(
        "--views",
        choices=list(VIEW_PRESETS),
        default=None,
        help="view preset of the vision pair's DINO and SimCLR (default paper; text and audio views are the "
        "same in every preset)",
    )
    parser.add_argument(
        "--local-crops", type=int, default=None, help="DINO local crops, vision (default 10, the paper's)"
    )
    parser.add_argument(
        "--simclr-grid", type=int, default=None, help="SimCLR patches per side, vision (default: the preset's, 7 or 4)"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path.home() / ".cache" / "skfungi-accuracy",
        help="block store: <cache-dir>/<pair>/blocks (the embedding and view blocks are shared by every projection)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--pca",
        choices=("auto", "full", "gram", "covariance_eigh", "randomized"),
        default="auto",
        help="the PCA's solver (default auto: exact up to 1,000 training samples, see "
        "skfungi.evaluation.scoring.pca_solver)",
    )
    parser.add_argument("--plot", type=Path, default=None, help="save the few-shot curves here (PNG)")
    parser.add_argument("--json", type=Path, default=None, help="save all results here")
    parser.add_argument("--markdown", type=Path, default=None, help="save the tables here")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument(
        "--report-from",
        type=Path,
        nargs="+",
        default=None,
        help="no computation: merge the --json files of earlier runs (one per pair) into the tables and plot",
    )
    return parser


def main(argv: Sequence[str] | None = None, pairs: Sequence[Pair] | None = None) -> int:
    """Run the benchmark; ``pairs`` replaces the real pairs (tests pass tiny synthetic ones)."""
    return main_with_args(build_parser().parse_args(argv), pairs)


def main_with_args(args: argparse.Namespace, pairs: Sequence[Pair] | None = None) -> int:
    """Run the benchmark with parsed options; returns the exit status."""
    if args.report_from:
        return report_from(args.report_from, args.markdown, args.plot)
    with stopwatch() as elapsed:
        results = run_pairs(args, pairs)
    if results is None:
        return 2
    write_report(args, results, elapsed.wall)
    return 0


def run_pairs(args: argparse.Namespace, pairs: Sequence[Pair] | None) -> list[dict] | None:
    """Every pair's results, printed (and saved with ``--json``) as each finishes; None when a pair
    cannot run (an option that does not apply to given pairs, or a missing asset)."""
    torch.set_num_threads(args.threads)
    n_splits = args.splits or (3 if args.quick else 5)
    probe_splits = min(n_splits, args.probe_splits if args.probe_splits is not None else 3)
    if pairs is not None:
        refused = refused_for_given_pairs(args)
        if refused:
            print(f"ERROR: {', '.join(refused)} build(s) the built-in pairs; the pairs passed from Python carry "
                  "their own settings. Leave the option(s) out.", file=sys.stderr)  # fmt: skip
            return None
        if args.projection is not None:
            pairs = [dataclasses.replace(pair, projection=args.projection) for pair in pairs]
    else:
        pairs, missing = build_pairs(args.pairs, args.quick, pair_options(args))
        if missing:
            print("ERROR: missing assets; nothing was run and no table is printed:", file=sys.stderr)
            for error in missing:
                print(f"  - {error.what}: {error.command}", file=sys.stderr)
            print("`make accuracy` installs all of them (apt packages need root).", file=sys.stderr)
            return None
    print(
        f"evidence benchmark: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {'quick' if args.quick else 'full'} run, {n_splits} splits"
    )
    results = []
    for pair in pairs:
        results.append(
            run_pair(pair, cache_dir=args.cache_dir, n_splits=n_splits, probe_splits=probe_splits,
                     pca_check=not args.quick, pca=args.pca, quiet=args.quiet)
        )  # fmt: skip
        print(format_result(results[-1]), flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"complete": False, "results": results}, indent=1))
    return results


def write_report(args: argparse.Namespace, results: list[dict], total: float) -> None:
    """The plot, the Markdown tables and the JSON of a finished run (``total`` wall seconds)."""
    if args.plot:
        plot_few_shot(results, args.plot)
    report = "\n\n".join(format_result(result) for result in results)
    report += f"\n\nTotal wall time {total:.0f} s ({total / 60:.1f} min)."
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(report + "\n")
    if args.json:
        args.json.write_text(json.dumps({"complete": True, "results": results, "wall_seconds": total}, indent=1))
    print(f"\ntotal wall time {total:.0f} s ({total / 60:.1f} min)")
