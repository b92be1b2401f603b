"""``skfungi evaluate``: does FUNGI help on my data? :func:`skfungi.evaluation.evaluate` from the shell.

This module's top level imports nothing heavy (the parser is built from it
for ``skfungi --help``); the command imports the library when it runs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from . import options
from .arguments import positive_int, sample_size, thread_count
from .errors import CommandError

__all__ = ["EVALUATE_DESCRIPTION", "EVALUATE_EPILOG", "add_evaluate_arguments", "evaluate_command"]

UNITS = {"image": "image", "text": "text", "audio": "clip"}

EVALUATE_DESCRIPTION = f"""\
Does FUNGI help on your data? Score the backbone's embedding, each gradient
block and each no-gradient control (the mean embedding of the same views) on
labelled data, on --splits random stratified train / test splits, and compare
every gradient feature set, split by split, with its matched control and with
the best feature set without gradients that costs no more per sample.

INPUT, with labels, is one of:
  - a folder of images, or of audio clips (.wav, .flac, .ogg, .aiff), whose
    class sub-folders are the labels;
  - a .csv or .parquet table with a text column (--text-column) and a label
    column (--label-column);
  - a .npz file with the samples (images or texts) under X, images or texts
    and the labels under y or labels (or the array --label-column names);
  - a .npy array of images or texts, with --labels FILE (a .npy array, or a
    text file with one label per line).

Before extracting, the command times a few samples and says how long the
extraction will take on this machine, and how long with the other --views
preset. Every extracted block is kept in --output (default INPUT.evaluation
beside INPUT): a rerun, an interrupted run, or a run with more losses,
another projection or other feature sets extracts only what is missing.
{options.EVALUATE_FIT_SAMPLES} samples (--fit-samples) are held out of INPUT to fit on (SimCLR's negative
bank) and never scored.

Output: the table (at most 88 columns), a recommendation in plain words,
--json (default OUTPUT/report.json; its schema is in the documentation page
"Does FUNGI help on your data?") and --plot (default OUTPUT/report.png:
accuracy against cost per sample). --compare A.json B.json pairs two earlier
runs split by split instead."""

EVALUATE_EPILOG = """\
examples:
  skfungi evaluate photos/ --backbone timm:vit_small_patch16_224.dino
  skfungi evaluate reviews.csv --backbone hf:sentence-transformers/all-MiniLM-L6-v2 \\
      --text-column review --label-column sentiment --protocols knn,linear_probe
  skfungi evaluate images.npz --backbone skfungi:mobilenet_v2 --image-size 32 --views fast
  skfungi evaluate --compare srht/report.json dense/report.json"""


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``skfungi evaluate``."""
    parser.add_argument("input", metavar="INPUT", nargs="?", help="labelled data: a folder, a table, .npz or .npy")
    parser.add_argument("--backbone", metavar="SPEC", help="backbone spec, as in 'skfungi extract' (required)")
    parser.add_argument(
        "--losses",
        metavar="LIST",
        help=f"comma-separated blocks among {', '.join(options.COMMAND_LOSSES)}; 'auto' (default): the paper's "
        "(kl,dino,simclr for images, kl,simclr otherwise); the no-gradient view block of each loss with views "
        "of its own is added as its control",
    )
    parser.add_argument("--views", choices=("paper", "fast"), help="view preset of the losses (default paper)")
    parser.add_argument("--layer", help="dotted path of the target layer (default: the backbone's own choice)")
    parser.add_argument(
        "--projection",
        choices=options.PROJECTION_CHOICES,
        default=options.PROJECTION,
        help=f"projection of the gradients (default {options.PROJECTION}, FungiTransformer's)",
    )
    parser.add_argument(
        "--sets",
        default="default",
        metavar="SETS",
        help="feature sets to score: 'default' (the embedding, each gradient block, and the embedding with "
        "all of them), 'all' (every combination), or e.g. 'emb+kl,emb+kl+simclr'",
    )
    parser.add_argument(
        "--protocols",
        default=",".join(options.EVALUATE_PROTOCOLS),
        metavar="LIST",
        help=f"comma-separated among {', '.join(options.PROTOCOL_CHOICES)} (few_shot_knn:<shots>); the first "
        "leads the table and the picture (default knn: PCA to 512, then 20 nearest neighbours)",
    )
    parser.add_argument(
        "--splits",
        type=positive_int,
        default=options.EVALUATE_SPLITS,
        metavar="N",
        help=f"random stratified splits (default {options.EVALUATE_SPLITS})",
    )
    parser.add_argument(
        "--test-size",
        type=sample_size,
        default=options.EVALUATE_TEST_SIZE,
        metavar="X",
        help=f"test part of each split: a fraction or a number of samples (default {options.EVALUATE_TEST_SIZE})",
    )
    parser.add_argument(
        "--train-size", type=sample_size, metavar="X", help="training part of each split (default: rest)"
    )
    parser.add_argument(
        "--fit-samples",
        type=positive_int,
        default=options.EVALUATE_FIT_SAMPLES,
        metavar="N",
        help=f"samples held out of INPUT to fit on (default {options.EVALUATE_FIT_SAMPLES})",
    )
    parser.add_argument(
        "--max-samples", type=positive_int, metavar="N", help="evaluate a stratified sample of N samples of INPUT"
    )
    parser.add_argument("--image-size", type=positive_int, metavar="N", help="side of the image backbone's views")
    parser.add_argument("--text-column", default="text", metavar="NAME", help="text column of a table (default text)")
    parser.add_argument("--label-column", metavar="NAME", help="label column of a table, label array of a .npz")
    parser.add_argument("--labels", metavar="FILE", help="labels of a .npy INPUT: a .npy array or one label per line")
    parser.add_argument("--output", metavar="DIR", help="folder of the extracted blocks (default INPUT.evaluation)")
    parser.add_argument("--json", metavar="FILE", help="the report as JSON (default OUTPUT/report.json)")
    parser.add_argument("--plot", metavar="FILE.png", help="accuracy against cost (default OUTPUT/report.png)")
    parser.add_argument("--seed", type=int, default=options.SEED, metavar="N", help="random_state (default 0)")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=options.EVALUATE_BATCH_SIZE,
        metavar="N",
        help=f"samples per batch (default {options.EVALUATE_BATCH_SIZE})",
    )
    parser.add_argument("--device", default="auto", metavar="DEVICE", help="torch device (default auto)")
    parser.add_argument("--precision", choices=("float32", "bfloat16", "float16"), default=options.PRECISION)
    parser.add_argument(
        "--threads",
        type=thread_count,
        metavar="N",
        help="torch's intra-op threads for this run (default: one thread for small forwards, torch's count otherwise)",
    )
    parser.add_argument("--num-workers", type=int, default=0, metavar="N", help="decoding threads (default 0)")
    parser.add_argument("--no-estimate", action="store_true", help="extract without timing a few samples first")
    parser.add_argument(
        "--on-error",
        choices=("fail", "skip"),
        default="fail",
        help="a sample that cannot be read: 'fail' (default) or 'skip' it",
    )
    parser.add_argument(
        "--compare", nargs=2, metavar=("A.json", "B.json"), help="pair two earlier runs split by split (no INPUT)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="also show the model libraries' messages")


def say(text: str = "") -> None:
    """Print ``text`` wrapped to 88 columns."""
    import textwrap

    print(textwrap.fill(text, width=88, break_long_words=False, break_on_hyphens=False) if text else "")


def evaluate_command(args: argparse.Namespace) -> int:
    """Run ``skfungi evaluate`` with parsed arguments; returns the exit status."""
    if args.compare:
        return _compare(args)
    if args.input is None:
        raise CommandError("INPUT is required (or --compare A.json B.json).")
    if args.backbone is None:
        raise CommandError("--backbone is required: e.g. --backbone skfungi:mobilenet_v2.")
    output, json_path, plot_path = _outputs(args)
    samples, labels, source = _samples(args, exclude=(output, json_path, plot_path))
    return _run(args, samples, labels, source, output, json_path, plot_path)


def _outputs(args) -> tuple[Path, Path, Path]:
    given = Path(args.input)
    output = Path(args.output) if args.output else given.with_name(given.name + ".evaluation")
    json_path = Path(args.json) if args.json else output / "report.json"
    plot_path = Path(args.plot) if args.plot else output / "report.png"
    if plot_path.suffix.lower() != ".png":
        raise CommandError(f"--plot {os.fspath(plot_path)!r} must end in .png.")
    if output.exists() and not output.is_dir():
        raise CommandError(f"--output {os.fspath(output)!r} is a file; name a folder.")
    return output, json_path, plot_path


def _labels_file(path: str, n_samples: int):
    import numpy as np

    file = Path(path)
    if not file.is_file():
        raise CommandError(f"--labels {path!r} is not a file.")
    if file.suffix.lower() == ".npy":
        labels = np.load(file, allow_pickle=False)
    else:
        labels = np.asarray([line.strip() for line in file.read_text().splitlines() if line.strip()])
    if labels.ndim != 1 or len(labels) != n_samples:
        raise CommandError(f"--labels {path!r} holds {labels.size} labels for {n_samples} samples.")
    return labels


def _samples(args, exclude: tuple):
    """The samples of INPUT (all or --max-samples of them) and their labels, checked."""
    import numpy as np

    from .inputs import read_input

    source = read_input(args.input, text_column=args.text_column, label_column=args.label_column, exclude=exclude)
    labels = source.labels
    if args.labels is not None:
        if labels is not None:
            raise CommandError("INPUT has labels of its own; leave out --labels.")
        labels = _labels_file(args.labels, len(source))
    if labels is None:
        raise CommandError(
            f"{args.input!r} has no labels: give a folder whose class sub-folders are the labels, --label-column "
            "for a table, a .npz with a 'y' array, or --labels FILE for a .npy array."
        )
    missing = np.flatnonzero(np.isnan(labels) if labels.dtype.kind == "f" else labels == "")
    if len(missing):
        listed = source.describe([(int(index), "no label") for index in missing[:5]])
        raise CommandError(f"{len(missing)} sample(s) of {args.input!r} have no label: {listed}.")
    failed = source.unreadable()
    if failed and args.on_error == "fail":
        raise CommandError(f"cannot read {source.describe(failed)}; pass --on-error skip to leave them out.")
    indices = np.setdiff1d(np.arange(len(source)), [index for index, _ in failed])
    if args.max_samples is not None and args.max_samples < len(indices):
        from sklearn.model_selection import train_test_split

        try:
            indices, _ = train_test_split(indices, train_size=args.max_samples, stratify=labels[indices],
                                          random_state=args.seed)  # fmt: skip
        except ValueError:
            indices, _ = train_test_split(indices, train_size=args.max_samples, random_state=args.seed)
        indices = np.sort(indices)
    samples, kept, failed = source.load(indices)
    if failed and args.on_error == "fail":
        raise CommandError(f"cannot read {source.describe(failed)}; pass --on-error skip to leave them out.")
    if isinstance(samples, np.ndarray):
        samples = samples[: len(kept)]
    return samples, labels[np.asarray(kept, dtype=np.intp)], source


def _run(args, samples, labels, source, output: Path, json_path: Path, plot_path: Path) -> int:
    import platform
    import time
    import warnings
    from contextlib import nullcontext

    import numpy as np
    import torch

    from ..evaluation import evaluate
    from .console import third_parties_silenced
    from .fitting import loss_names
    from .progress import ProgressBars

    start = time.perf_counter()
    losses = loss_names(args.losses or options.LOSSES, source.modality)
    say(
        f"skfungi evaluate: {args.backbone} on {args.input} ({len(labels)} {UNITS[source.modality]}s, "
        f"{len(np.unique(labels))} classes; {args.fit_samples} held out to fit on, {args.splits} splits)"
    )
    bars = ProgressBars(UNITS[source.modality], disable=args.quiet)
    quiet = nullcontext() if args.verbose else third_parties_silenced()
    with _torch_threads(args.threads), quiet, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        try:
            report = evaluate(
                args.backbone,
                samples,
                labels,
                losses=losses,
                views=args.views or options.VIEWS,
                layer=args.layer or options.LAYER,
                projection=args.projection,
                feature_sets=args.sets,
                protocols=args.protocols,
                splits=args.splits,
                test_size=args.test_size,
                train_size=args.train_size,
                fit_samples=args.fit_samples,
                random_state=args.seed,
                batch_size=args.batch_size,
                device=args.device,
                precision=args.precision,
                num_workers=args.num_workers,
                num_threads=options.num_threads(args.threads),
                input_size=args.image_size,
                output_dir=output,
                estimate=not args.no_estimate,
                progress=bars,
                log=say,
                data_name=Path(args.input).name,
            )
        except ValueError as error:  # the library's checks of the settings, in one line
            raise CommandError(str(error)) from error
        finally:
            bars.close_all()
        threads = torch.get_num_threads()
    print()
    print(report.summary())
    for message in dict.fromkeys(str(warning.message) for warning in caught if "skfungi" in str(warning.filename)):
        say(f"warning: {message}")
    report.to_json(json_path)
    print(f"the report (JSON): {json_path}")
    try:
        report.plot(plot_path)
        print(f"the picture: {plot_path}")
    except ImportError:
        say("warning: no picture: drawing it needs matplotlib (pip install matplotlib).")
    print(f"the blocks, kept for the next run: {output}")
    plural = "s" if threads > 1 else ""
    wall = time.perf_counter() - start
    counted = f"{threads} torch thread{plural}"
    if args.threads is None:
        counted = f"small forwards at 1 torch thread, others at {threads}"
    say(f"total wall time: {wall:.0f} s on {platform.machine()} ({counted})")
    return 0


def _torch_threads(threads):
    from contextlib import contextmanager

    import torch

    @contextmanager
    def threads_set():
        previous = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    return threads_set()


def _compare(args) -> int:
    from ..evaluation import compare_runs

    try:
        comparison = compare_runs(*args.compare)
    except (OSError, ValueError) as error:
        raise CommandError(str(error)) from error
    print(comparison.table())
    return 0
