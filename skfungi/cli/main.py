"""The ``skfungi`` argument parser and entry point.

This module imports nothing heavy (no torch, scikit-learn or numpy): ``skfungi
--help`` answers at once, and each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Sequence

from . import options
from .arguments import non_negative_int, positive_int, thread_count
from .options import COMMAND_LOSSES

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_TERMINATED", "build_parser", "main"]

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM


EXTRACT_DESCRIPTION = f"""\
Extract FUNGI features (the backbone's embedding and the projected per-sample
gradients of each loss, each block L2-normalised) of every sample of INPUT.

INPUT is one of:
  - a folder of images (searched recursively; hidden files and files that are
    not images by extension are ignored). When every image lies in a
    sub-folder, the first-level sub-folder names become the label column.
  - a .csv or .parquet table with a text column (--text-column), and
    optionally a label column (--label-column).
  - a .npy array: images of shape (N, H, W) or (N, H, W, C), uint8, uint16
    (16-bit), bool or floats in [0, 1], or a 1-D array of texts.
Every option and the whole input are checked before anything is written: a
mistyped command leaves no file behind.

OUTPUT is written when every sample is done:
  - .parquet: a "sample" column (the file's path relative to INPUT, or the row
    number), a "label" column when there are labels, then one column per block
    of features ("embedding", "kl", "dino", "simclr"), each a fixed-size list
    of float32 (--layout wide: one float32 column per feature instead);
  - .npz: arrays features, feature_names, samples and (with labels) labels;
  - .npy: the float32 feature matrix only, one row per sample in INPUT's
    order (sorted relative paths for a folder);
  - a folder (a path ending with /, an existing folder, or no extension): a
    Parquet dataset, part-000000.parquet ... in row order, with the columns
    of a .parquet OUTPUT, which pandas, pyarrow, Dask, polars and DuckDB read.

--workers N (a local Dask cluster) or --scheduler ADDRESS (a running one)
transform the chunks on a cluster: the fit stays here, the features are
bit for bit those of --threads 1 (docs/scale_out.md).

Fitting draws the random heads and projection from --seed and encodes
SimCLR's negative bank: --fit-samples samples (default {options.FIT_SAMPLES}, the
reference implementation's bank size) of --fit-input, drawn with --seed. With
skfungi:mobilenet_v2 and the paper's views, a bank image costs about 0.7 of the
extraction of one image (measured on a CPU): the default fit costs as much as
extracting about 45 images. Progress bars count images (or texts) with the
time left, for the fit and for the extraction.

The samples are transformed in chunks of --chunk-size. Finished chunks and
the fitted transformer are kept in OUTPUT.parts/ next to OUTPUT: after an
interruption (Ctrl-C, kill), rerunning the same command continues where it
stopped without fitting again; a rerun with other settings is refused
(--restart discards the partial results). OUTPUT is written under a temporary
name and renamed when complete, so a file named OUTPUT is never truncated. To
give a test set the training set's transformer, save it with
--save-transformer when extracting the training set and pass it with
--transformer when extracting the test set."""

EXTRACT_EPILOG = """\
examples:
  skfungi extract photos/ -o features.parquet --backbone skfungi:mobilenet_v2
  skfungi extract train/ -o train.parquet --backbone skfungi:mobilenet_v2 --save-transformer fungi.pkl
  skfungi extract test/ -o test.parquet --transformer fungi.pkl
  skfungi extract reviews.csv -o reviews.npz --backbone hf:sentence-transformers/all-MiniLM-L6-v2 \\
      --text-column review --label-column sentiment --losses kl,simclr"""

BACKBONE_HELP = (
    "backbone spec, loaded with its pretrained weights: 'skfungi:mobilenet_v2' (ImageNet MobileNetV2 from an "
    "offline package), 'timm:<name>[.<tag>]' (timm, e.g. timm:vit_small_patch16_224.dino), "
    "'open_clip:<arch>/<tag>' or 'open_clip:hf-hub:<repo>' (its image tower for images, its text tower for "
    "texts), 'hf:<hub id or local folder>' (a Hugging Face text encoder), "
    "'sentence_transformers:<hub id or local folder>'. Weights come from the local cache "
    "or are downloaded; 'skfungi info' lists the models found in the local caches. Append "
    "'?pretrained=<weights file>' to load a local file, or '?pretrained=false' for random weights (drawn from "
    "--seed): the only way to get them"
)


def build_parser() -> argparse.ArgumentParser:
    """The ``skfungi`` argument parser with its ``extract``, ``evaluate``, ``demo`` and ``info`` commands.

    ``demo``'s own options are parsed by the demo (``skfungi demo --help``
    lists them), so that this parser imports nothing of it.
    """
    from .._version import __version__

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
    from .index import add_index_commands

    add_index_commands(commands)

    from .evaluate import EVALUATE_DESCRIPTION, EVALUATE_EPILOG, add_evaluate_arguments  # torch-free

    evaluate = commands.add_parser(
        "evaluate",
        help="does FUNGI help on your data? the gradient blocks against their no-gradient controls",
        description=EVALUATE_DESCRIPTION,
        epilog=EVALUATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_evaluate_arguments(evaluate)

    commands.add_parser(
        "demo",
        add_help=False,
        help="skfungi evaluate on Fashion-MNIST with the ImageNet MobileNetV2 ('skfungi demo --help')",
    )
    commands.add_parser(
        "info",
        help="print versions, devices, optional assets and the pretrained models in the local caches",
        description="Print skfungi's and its dependencies' versions, the torch devices available, which "
        "optional offline assets are installed (with the command installing each missing one), and the "
        "pretrained models found in the local caches (Hugging Face hub, open_clip, torch hub), each with the "
        "--backbone spec that loads it.",
    )
    return parser


def _add_extract_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="folder of images, .csv / .parquet table, or .npy array")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTPUT",
        help="output file (.parquet, .npz or .npy) or folder (a Parquet dataset: features/)",
    )
    parser.add_argument("--backbone", metavar="SPEC", help=BACKBONE_HELP + " (required unless --transformer)")
    parser.add_argument(
        "--losses",
        metavar="LIST",
        help=f"comma-separated blocks among {', '.join(COMMAND_LOSSES)}: the gradients of the KL, DINO and SimCLR "
        "losses, and the no-gradient controls (the mean embedding of DINO's or SimCLR's views); 'auto' (default): "
        "kl,dino,simclr for images, kl,simclr for texts; 'none': the embedding alone",
    )
    parser.add_argument(
        "--views",
        choices=("paper", "fast"),
        help="view settings of the losses: 'paper' (default: 1 KL + 12 DINO + 49 SimCLR views per image, at "
        "the input size) or 'fast' (DINO's local crops at their own size and a 4 x 4 SimCLR grid): several times "
        "cheaper, see the measured cost and accuracy in the benchmarks page (docs/benchmarks.md, 'View presets'). "
        "Texts have the same views in both",
    )
    parser.add_argument("--layer", help="dotted path of the target layer (default: the backbone's own choice)")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=options.BATCH_SIZE,
        metavar="N",
        help=f"samples per batch (default {options.BATCH_SIZE}); the progress bar moves once per batch",
    )
    parser.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help="torch device: auto (default: CUDA, then MPS, then the CPU), cpu, cuda, cuda:1, mps ... A saved "
        "transformer (a resumed run, --transformer) runs on the device it was fitted on",
    )
    parser.add_argument(
        "--precision",
        choices=("float32", "bfloat16", "float16"),
        help="autocast dtype of the backbone's forward passes (default float32); gradients and projections "
        "accumulate in float32",
    )
    parser.add_argument(
        "--num-workers",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="threads decoding the next batches while one is computed (default 0: none)",
    )
    parser.add_argument(
        "--threads",
        type=thread_count,
        metavar="N",
        help="torch's intra-op threads for this run (default: one thread for forwards under 1 GFLOP a batch, torch's "
        "own count, one per core, for larger ones). On a machine busy with other jobs, 1 can be several times faster: "
        "threads that wait for a busy core stall the others (docs/cli.md, 'Threads')",
    )
    cluster = parser.add_mutually_exclusive_group()
    cluster.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="transform the chunks on a local Dask cluster of N worker processes, one torch thread each (fitting "
        "stays in this process); needs pip install 'skfungi[distributed]'. See docs/scale_out.md",
    )
    cluster.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="transform the chunks on the running Dask cluster whose scheduler is at ADDRESS (tcp://host:8786); the "
        "workers need skfungi and the backbone's package, not INPUT: this process reads the samples",
    )
    parser.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="random_state of every random choice, and the weights of a backbone asked for with random "
        "weights (default 0)",
    )
    parser.add_argument(
        "--fit-input",
        metavar="PATH",
        help="input to fit on (SimCLR's negative bank comes from it); default: INPUT",
    )
    parser.add_argument(
        "--fit-samples",
        type=positive_int,
        metavar="N",
        help=f"size of SimCLR's negative bank: samples of the fit input encoded by fit, drawn with --seed "
        f"(default {options.FIT_SAMPLES}; with skfungi:mobilenet_v2 and the paper's views each costs about 0.7 "
        "of one image's extraction)",
    )
    parser.add_argument(
        "--bank-cache",
        metavar="DIR",
        help="folder where fit stores SimCLR's encoded negative bank and reads it back in a later run with the "
        "same backbone, settings, machine and fit samples (FungiTransformer's memory); a stored bank is used "
        "only if it equals a fresh encoding (default: none, the bank is encoded at every fit)",
    )
    parser.add_argument(
        "--save-transformer",
        metavar="FILE",
        help="also save the fitted transformer to FILE (a pickle; joblib.load or pickle.load gives the "
        "FungiTransformer), to extract another input with --transformer FILE",
    )
    parser.add_argument(
        "--transformer",
        metavar="FILE",
        help="use the fitted transformer saved in FILE (by --save-transformer) instead of fitting: the "
        "backbone, losses, views, layer, seed, precision and negative bank are FILE's. Load only files you trust",
    )
    parser.add_argument(
        "--chunk-size",
        type=positive_int,
        metavar="N",
        default=options.CHUNK_SIZE,
        help=f"samples per saved chunk, the unit of resumption: an interruption loses at most one chunk's work "
        f"(default {options.CHUNK_SIZE})",
    )
    parser.add_argument(
        "--layout",
        choices=("blocks", "wide"),
        help="columns of a .parquet OUTPUT: 'blocks' (default: one fixed-size list of float32 per block) or "
        "'wide' (one float32 column per feature)",
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
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show the progress bars, log messages and warnings of the libraries the backbone comes from",
    )


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
        when interrupted (Ctrl-C), 143 when terminated (SIGTERM). Invalid
        arguments exit with status 2 (argparse).
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "demo":
        return _demo(extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from .console import Terminated, log_to_stderr, signals_as_exceptions

    try:
        with signals_as_exceptions(), log_to_stderr(getattr(args, "quiet", False), getattr(args, "verbose", False)):
            return _run(args)
    except KeyboardInterrupt as interruption:
        print("skfungi: interrupted; rerun the same command to continue where it stopped.", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(interruption, Terminated) else EXIT_INTERRUPTED
    except Exception as error:
        if args.traceback:
            raise
        print(f"skfungi: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_ERROR


def _run(args: argparse.Namespace) -> int:
    if args.command == "extract":
        from .extract import extract_command

        return extract_command(args)
    if args.command in ("index", "search"):
        from .index import index_command, search_command

        return (index_command if args.command == "index" else search_command)(args)
    if args.command == "evaluate":
        from .evaluate import evaluate_command

        return evaluate_command(args)
    from .info import info_command

    return info_command(args)


def _demo(argv: list[str]) -> int:
    """``skfungi demo``: the MobileNetV2 x Fashion-MNIST demo, with its own options."""
    from . import demo

    parser = demo._parser()
    parser.prog = "skfungi demo"
    return demo.main_with_args(parser.parse_args(argv))


def _one_line(error: Exception) -> str:
    message = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        message += "; free some space and rerun the same command"
    return message
