"""The fitted transformer of ``skfungi extract``: fitted on a draw of the fit input, saved, loaded back.

A fitted :class:`~skfungi.FungiTransformer` pickles with its backbone, heads,
projection seed and SimCLR's negative bank; loaded back it gives the same
features. The command keeps it in ``OUTPUT.parts/`` (a resumed run loads it
instead of fitting again) and, on request, in a file of the user's
(``--save-transformer``) that a later extraction uses (``--transformer``).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import options
from .errors import CommandError

__all__ = ["TRANSFORMER_FILE", "fit_transformer", "load_transformer", "loss_names", "transformer_writer"]

logger = logging.getLogger(__name__)

TRANSFORMER_FILE = "transformer.pkl"


def loss_names(text: str, modality: str) -> tuple[str, ...]:
    """The loss names of ``--losses`` (``auto``, ``none`` or a comma-separated list) for ``modality``."""
    if text == "auto":
        return options.paper_losses(modality)
    if text == "none":
        return ()
    names = tuple(name.strip().lower() for name in text.split(","))
    if not all(names):
        raise CommandError(f"--losses {text!r} has an empty name; give e.g. 'kl,dino,simclr', 'auto' or 'none'.")
    unknown = [name for name in names if name not in options.COMMAND_LOSSES]
    if unknown:
        raise CommandError(
            f"--losses: unknown loss {unknown[0]!r}; use a comma-separated list of "
            f"{', '.join(options.COMMAND_LOSSES)}, or 'auto' or 'none'."
        )
    return names


def fit_transformer(args: argparse.Namespace, names: tuple[str, ...], fit_source, bars) -> object:
    """A :class:`~skfungi.FungiTransformer` of the command's options, fitted on ``--fit-samples`` of ``fit_source``.

    SimCLR's negative bank is every fitted sample; ``bars`` shows one bar over
    the bank's samples (the rest of ``fit`` is quick).
    """
    import torch

    from .._transformer import FungiTransformer
    from ..losses import make_loss

    seed = options.SEED if args.seed is None else args.seed
    fit_samples = args.fit_samples or options.FIT_SAMPLES
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(fit_source), size=min(fit_samples, len(fit_source)), replace=False))
    samples, kept, failed = fit_source.load(chosen)
    if failed:
        listed = fit_source.describe(failed)
        if args.on_error == "fail":
            raise CommandError(f"cannot read {listed} (drawn for fit); pass --on-error skip to leave it out.")
        logger.warning("fit: skipped %d unreadable sample(s): %s", len(failed), listed)
    if not kept:
        raise CommandError("no fit sample could be read.")
    views = args.views or options.VIEWS
    losses = [make_loss(name, views) for name in names]
    for loss in losses:
        if "n_negatives" in loss.get_params():
            loss.set_params(n_negatives=len(kept))
    fungi = FungiTransformer(
        args.backbone,
        losses=losses,
        views=views,
        layer=args.layer or options.LAYER,
        batch_size=args.batch_size,
        random_state=seed,
        modality=fit_source.modality,
        device=args.device,
        precision=args.precision or options.PRECISION,
        num_workers=args.num_workers,
        num_threads=options.num_threads(args.threads),
        memory=args.bank_cache,
        verbose=int(bool(args.verbose)),  # the model libraries' own messages; the bars are the command's
    )
    bank = len(kept) if any("n_negatives" in loss.get_params() for loss in losses) else 0
    stored = f", read from {args.bank_cache} if a verified copy is stored there" if args.bank_cache else ""
    logger.info(
        "fitting on %d sample(s) of %s%s",
        len(kept),
        args.fit_input or args.input,
        f" (SimCLR's negative bank: {bank} {bars.unit}s{stored})" if bank else "",
    )
    if bank:
        bars.expect("fit", "fit (negative bank)", total=bank)
    # A backbone asked for with random weights is built in fit from torch's global generator: seeding
    # it gives every run the same weights.
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fungi.fit(samples)
    finally:
        bars.close("fit")
    return fungi


def transformer_writer(fungi) -> Callable:
    """``write(file)`` pickling ``fungi`` (for :func:`~skfungi.cli.chunks.atomic_write`)."""
    return lambda file: pickle.dump(fungi, file, protocol=pickle.HIGHEST_PROTOCOL)


def load_transformer(path: Path, recover: str) -> object:
    """The fitted FungiTransformer pickled in ``path``; ``recover`` says what to do if it cannot be loaded."""
    from .._transformer import FungiTransformer

    try:
        with open(path, "rb") as file:
            fungi = pickle.load(file)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, ValueError) as error:
        raise CommandError(
            f"cannot load the fitted transformer saved in {os.fspath(path)!r} ({type(error).__name__}: {error}); "
            f"{recover}."
        ) from error
    if not isinstance(fungi, FungiTransformer) or not hasattr(fungi, "n_features_out_"):
        raise CommandError(
            f"{os.fspath(path)!r} holds a {type(fungi).__name__}, not a fitted FungiTransformer; {recover}."
        )
    return fungi


def file_digest(path: Path) -> str:
    """The first 16 hex digits of the SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
