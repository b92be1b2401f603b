"""``skfungi demo``: ``skfungi evaluate`` on a sample of Fashion-MNIST with the ImageNet MobileNetV2.

The demo is no longer a program of its own: it writes its data (1,256
stratified Fashion-MNIST training images, or scikit-learn's digits when the
Debian package ``dataset-fashion-mnist`` is missing) with
:func:`skfungi.evaluation.demo_data.write_demo_data`, prints the
``skfungi evaluate`` command it stands for, and runs it. ``make demo`` runs
the same two steps (``skfungi demo --data-only``, then ``skfungi evaluate``).
Options after ``skfungi demo`` are ``skfungi evaluate``'s and replace the
demo's; ``--quick`` is a smoke run (60 train / 40 test images, 2 splits).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .evaluate import add_evaluate_arguments

__all__ = ["DEMO_ARGUMENTS", "QUICK_ARGUMENTS", "demo_command_line", "main", "main_with_args"]

DEMO_FOLDER = "skfungi-demo"
#: The demo's settings: MobileNetV2 at 32 px, 256 images held out to fit on, 5 splits of 700 / 300
DEMO_ARGUMENTS = {
    "backbone": "skfungi:mobilenet_v2",
    "image_size": 32,
    "fit_samples": 256,
    "train_size": 700,
    "test_size": 300,
    "splits": 5,
    "threads": 1,
    "batch_size": 256,
}
QUICK_ARGUMENTS = {"fit_samples": 16, "train_size": 60, "test_size": 40, "splits": 2}


def _parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m skfungi.cli.demo",
        description=__doc__.splitlines()[0] + " Takes skfungi evaluate's options; INPUT is the demo's data.",
        add_help=add_help,
    )
    add_evaluate_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="smoke run: 60 train / 40 test images, 2 splits")
    parser.add_argument(
        "--data-only", action="store_true", help="write the demo's data to OUTPUT, print its path, evaluate nothing"
    )
    parser.set_defaults(**DEMO_ARGUMENTS, output=DEMO_FOLDER)
    return parser


def demo_command_line(args: argparse.Namespace, data_path) -> list[str]:
    """The ``skfungi evaluate`` arguments the demo stands for: its data, and every option that differs
    from ``skfungi evaluate``'s default (the demo's settings and the options given)."""
    plain = argparse.ArgumentParser(add_help=False)
    add_evaluate_arguments(plain)
    line = ["evaluate", str(data_path)]
    for action in plain._actions:
        value = getattr(args, action.dest, None)
        if action.dest == "input" or value is None or value == action.default or not action.option_strings:
            continue
        flag = action.option_strings[-1]
        if value is True:
            line.append(flag)
        elif not isinstance(value, bool):
            line += [flag, *map(str, value if isinstance(value, (list, tuple)) else [value])]
    return line


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit status."""
    return main_with_args(_parser().parse_args(argv))


def main_with_args(args: argparse.Namespace) -> int:
    """Write the demo's data, print the ``skfungi evaluate`` command it stands for, and run it."""
    from ..evaluation.demo_data import DEMO_SAMPLES, write_demo_data
    from .console import Terminated, log_to_stderr, signals_as_exceptions
    from .errors import CommandError
    from .evaluate import evaluate_command

    if args.quick:
        for name, value in QUICK_ARGUMENTS.items():
            setattr(args, name, min(getattr(args, name), value))
    n_samples = DEMO_SAMPLES if not args.quick else args.fit_samples + args.train_size + args.test_size
    try:
        with signals_as_exceptions(), log_to_stderr(args.quiet, args.verbose):
            args.input = str(write_demo_data(args.output, n_samples))
            if args.data_only:
                print(args.input)
                return 0
            print("skfungi demo runs: skfungi " + " ".join(demo_command_line(args, args.input)), flush=True)
            return evaluate_command(args)
    except KeyboardInterrupt as interruption:
        print("skfungi: interrupted; rerun the same command to continue where it stopped.", file=sys.stderr)
        return 143 if isinstance(interruption, Terminated) else 130
    except CommandError as error:
        print(f"skfungi: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
