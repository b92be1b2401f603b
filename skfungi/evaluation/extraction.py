"""Every block extracted once, each by its own transformer, kept in a store; and the time it will take.

Each block gets its own :class:`~skfungi.FungiTransformer` with the same
``random_state``, hence the same heads, views and projection as one
transformer with every block (a test checks that the blocks are exactly its
columns), so that each block's cost is timed on its own. The no-gradient
control of a gradient block is :class:`~skfungi.losses.ViewAverage` of its
loss: the mean embedding of the same views, same seeds, no gradient.
"""

from __future__ import annotations

import copy
import logging
import numbers
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

from .._utils.sample_names import samples_named
from .feature_sets import EMBEDDING, VIEWS_SUFFIX, is_gradient_block, set_label
from .store import Block, BlockStore

__all__ = ["Estimate", "estimate_extraction", "extract_blocks", "plan_blocks", "resolve_once", "settings_of"]

logger = logging.getLogger(__name__)


def plan_blocks(losses, views: str = "paper", modality: str = "image") -> dict[str, object]:
    """The blocks to extract: the embedding, each gradient loss, and the view block of each loss with views.

    Parameters
    ----------
    losses : "auto" or sequence of str or FungiLoss
        As ``FungiTransformer(losses=...)``; ``"auto"`` is the paper's set for
        ``modality``. View blocks (``"dino_views"``) may be named too.
    views : {"paper", "fast"}
        The view preset of the losses given by name.
    modality : str
        ``"image"``, ``"text"``, ``"audio"`` or ``"tabular"`` (for ``"auto"``).

    Returns
    -------
    blocks : dict of str to FungiLoss or None
        Block name -> its loss (``None``: the embedding), in the order
        embedding, gradient blocks, view blocks. A loss whose one view is the
        inference view (KL) gets no view block: the embedding is its control.

    Examples
    --------
    >>> list(plan_blocks(("kl", "dino", "simclr")))
    ['embedding', 'kl', 'dino', 'simclr', 'dino_views', 'simclr_views']
    >>> list(plan_blocks("auto", modality="text"))
    ['embedding', 'kl', 'simclr', 'simclr_views']
    """
    from .. import _defaults
    from ..losses import ViewAverage, make_loss

    names = _defaults.paper_losses(modality) if isinstance(losses, str) and losses == "auto" else losses
    if isinstance(names, str):
        names = [names]
    chosen = {}
    for loss in names:
        made = make_loss(loss, views)
        if made.name in chosen or made.name == EMBEDDING:
            raise ValueError(f"the block {made.name!r} is asked for twice.")
        chosen[made.name] = made
    gradients = {name: loss for name, loss in chosen.items() if is_gradient_block(name)}
    blocks: dict[str, object] = {EMBEDDING: None, **gradients}
    for name, loss in gradients.items():
        if not loss.uses_inference_view and name + VIEWS_SUFFIX not in chosen:
            blocks[name + VIEWS_SUFFIX] = ViewAverage(loss)
    blocks.update({name: loss for name, loss in chosen.items() if not is_gradient_block(name)})
    return blocks


def resolve_once(backbone, sample, *, random_state: int = 0, device="auto", input_size: int | None = None):
    """The backbone adapter that ``FungiTransformer`` builds from a spec string, built once for every block.

    A spec string is resolved by a transformer fitted on one sample (so that a
    spec with random weights gets the weights the transformer would give);
    ``input_size`` then replaces the adapter's (image backbones), for which a
    module is resolved into its adapter the same way. Adapters, and modules
    without ``input_size``, are returned as they are.
    """
    import torch

    FungiTransformer = fungi_transformer()
    adapter = backbone
    if isinstance(backbone, str) or (input_size is not None and isinstance(backbone, torch.nn.Module)):
        fitted = FungiTransformer(backbone, losses=(), random_state=random_state, device=device).fit([sample])
        adapter = fitted.backbone_
    if input_size is not None:
        if not hasattr(adapter, "input_size"):
            raise ValueError(f"input_size applies to image backbones; {type(adapter).__name__} has none.")
        adapter = _resized(adapter, input_size)
    return adapter


def _resized(adapter, input_size):
    """A copy of the image adapter whose views are ``input_size`` pixels, a side it can forward (a ViT: a
    multiple of its patch size; a model of fixed size: its own)."""
    if not isinstance(input_size, numbers.Integral) or isinstance(input_size, bool) or input_size < 1:
        raise ValueError(f"input_size must be a positive int, got {input_size!r}.")
    forwarded = adapter.forward_size(int(input_size))
    if forwarded != input_size:
        raise ValueError(
            f"input_size={input_size} is a side {type(adapter).__name__}({type(adapter.module).__name__}) cannot "
            f"forward: it takes {forwarded}-px views; pass input_size={forwarded}."
        )
    adapter = copy.copy(adapter)
    adapter.input_size = int(input_size)
    return adapter


def settings_of(name: str, loss, base: Mapping, transformer_options: Mapping) -> dict:
    """What determines a block's features, its key in a :class:`BlockStore`: ``base`` (data, backbone,
    seed), the loss, and for a gradient block the target layer and the projection (never for the
    embedding or a view block, so that they are found again under another projection)."""
    settings = {**base, "block": name}
    if loss is not None:
        params = {key: repr(value) for key, value in sorted(loss.get_params(deep=True).items())}
        settings["loss"] = {"class": type(loss).__name__, "params": params}
    if is_gradient_block(name):
        for option in ("layer", "projection", "projection_dim"):
            settings[option] = repr(transformer_options[option])
    return settings


def _has_bank(loss) -> bool:
    return loss is not None and "n_negatives" in loss.get_params(deep=False)


def extract_blocks(
    backbone,
    blocks: Mapping[str, object],
    fit_samples: Sequence,
    samples: Sequence,
    *,
    store: BlockStore | None = None,
    store_settings: Mapping | None = None,
    progress=None,
    on_block: Callable[[Block], None] | None = None,
    random_state: int = 0,
    positions: tuple | None = None,
    **transformer_options,
) -> dict[str, Block]:
    """Each block on ``samples``, by its own transformer fitted on ``fit_samples``, or read from ``store``.

    Parameters
    ----------
    backbone : object
        Anything ``FungiTransformer`` accepts as ``backbone`` (see :func:`resolve_once`).
    blocks : mapping of str to FungiLoss or None
        From :func:`plan_blocks`.
    fit_samples, samples : sequence
        The samples the transformers are fitted on (SimCLR's negative bank),
        and those whose features are computed.
    store : BlockStore or None
        Where blocks are read from and saved to.
    store_settings : mapping or None
        What identifies the data, fit samples and backbone in the store's keys
        (see :func:`~skfungi.evaluation.evaluate`); required with ``store``.
    progress : object or None
        Shows progress: ``open(stage, description, total, unit=None)``,
        ``expect(stage, description, total)``, ``close(stage)`` and, as the
        library's progress listener, ``progress(stage, n_samples)`` per
        finished sample, image by image within a batch
        (``skfungi.cli.progress.ProgressBars`` is one: the command line's bars).
    on_block : callable or None
        Called with each block as it is ready.
    random_state : int
    positions : (sequence or None, sequence or None) or None
        Where ``fit_samples`` and ``samples`` lie in the caller's data (their
        positions in ``X``): an error that names a sample by its position
        names it by these instead. None: as given.
    **transformer_options
        ``layer``, ``projection``, ``projection_dim``, ``batch_size``,
        ``device``, ``precision``, ``num_workers``, ``memory``, ... of ``FungiTransformer``.

    Returns
    -------
    blocks : dict of str to Block
        In the order of ``blocks``.
    """
    FungiTransformer = fungi_transformer()
    options = {"layer": "auto", "projection": _projection_default(), "projection_dim": "auto", **transformer_options}
    if store is not None and store_settings is None:
        raise ValueError("store_settings is required with a store.")
    base = {**(store_settings or {}), "random_state": random_state}
    extracted: dict[str, Block] = {}
    for name, loss in blocks.items():
        settings = settings_of(name, loss, base, options)
        block = store.load(name, settings) if store is not None else None
        if block is None:
            transformer = FungiTransformer(
                backbone,
                losses=() if loss is None else (loss,),
                include_embedding=loss is None,
                random_state=random_state,
                **options,
            )
            block = _extract_one(transformer, name, loss, fit_samples, samples, progress, positions or (None, None))
            if isinstance(backbone, str):  # the next blocks reuse the loaded model
                backbone = transformer.backbone_
            if store is not None:
                store.save(block, settings)
        else:
            logger.info("%s: read from %s", set_label((name,)), store.folder)
        extracted[name] = block
        if on_block is not None:
            on_block(block)
    return extracted


def fungi_transformer() -> type:
    """:class:`skfungi.FungiTransformer`, imported from its module (this package sits in the estimators'
    layer, beside it, and never imports the package's facade: tests/test_architecture.py)."""
    from .._transformer import FungiTransformer

    return FungiTransformer


def _projection_default():
    from .. import _defaults

    return _defaults.PROJECTION


def _listening(progress):
    if progress is None:
        return nullcontext()
    from .._utils.progress import progress_listener  # the library's per-sample reports (the CLI's bars use them)

    return progress_listener(progress)


def _extract_one(transformer, name: str, loss, fit_samples, samples, progress, positions) -> Block:
    label = set_label((name,))
    if progress is not None and _has_bank(loss):
        progress.expect("fit", f"{label}: fit (negative bank)", total=len(fit_samples))
    with _listening(progress):
        try:
            start = time.perf_counter()
            with samples_named(positions[0]):
                transformer.fit(fit_samples)
            fitted = time.perf_counter()
        finally:
            if progress is not None:
                progress.close("fit")
        if progress is not None:
            progress.open("transform", label, total=len(samples))
        try:
            with samples_named(positions[1]):
                features = transformer.transform(samples)
            done = time.perf_counter()
        finally:
            if progress is not None:
                progress.close("transform")
    return Block(name, features, fitted - start, (done - fitted) / len(samples))


@dataclass
class Estimate:
    """What an extraction is expected to take, from a few timed samples.

    Attributes
    ----------
    seconds : float
        Expected extraction time of every block (fit and transform).
    fit_seconds, seconds_per_sample : float
        Their parts: the fits, and the transform per sample (all blocks).
    n_timed : int
        Samples timed (after one untimed warm-up sample).
    """

    seconds: float
    fit_seconds: float
    seconds_per_sample: float
    n_timed: int

    def to_dict(self) -> dict:
        return {
            "seconds": self.seconds,
            "fit_seconds": self.fit_seconds,
            "seconds_per_sample": self.seconds_per_sample,
            "n_timed": self.n_timed,
        }


def estimate_extraction(
    backbone,
    blocks: Mapping[str, object],
    fit_samples: Sequence,
    samples: Sequence,
    *,
    n_timed: int = 4,
    random_state: int = 0,
    positions: tuple | None = None,
    **transformer_options,
) -> Estimate:
    """Time every block on ``n_timed`` samples (one transformer with all of them) and extrapolate.

    The fit is timed on ``n_timed`` fit samples and scaled to the negative
    bank's size; ``transform`` is timed on ``n_timed`` samples after an
    untimed warm-up sample and scaled to ``len(samples)``. Small batches run
    slower per sample than large ones, and extracting each block on its own
    forwards the inference view once per block, so the figure is approximate.
    Pass a resolved adapter (:func:`resolve_once`): a spec string would be
    loaded inside the timed fit. ``positions`` as in :func:`extract_blocks`.
    """
    FungiTransformer = fungi_transformer()
    losses = [copy.deepcopy(loss) for loss in blocks.values() if loss is not None]
    k = max(1, min(n_timed, len(fit_samples), len(samples) - 1 if len(samples) > 1 else 1))
    options = {"projection": _projection_default(), **transformer_options}
    transformer = FungiTransformer(backbone, losses=losses, random_state=random_state, **options)
    fit_positions, positions = positions or (None, None)
    start = time.perf_counter()
    with samples_named(None if fit_positions is None else fit_positions[:k]):
        transformer.fit(list(fit_samples[:k]))
    fit_time = time.perf_counter() - start
    bank = [loss for loss in transformer.losses_ if hasattr(loss, "n_negatives_")]
    if bank:  # encoding the bank dominates fit: scale it to the real bank's size
        fit_time *= min(max(loss.n_negatives_ for loss in bank), len(fit_samples)) / k
    with samples_named(None if positions is None else positions[:1]):
        transformer.transform(list(samples[:1]))  # warm-up
    first = 1 if len(samples) > k else 0
    timed = list(samples[first : first + k])
    start = time.perf_counter()
    with samples_named(None if positions is None else positions[first : first + k]):
        transformer.transform(timed)
    per_sample = (time.perf_counter() - start) / len(timed)
    return Estimate(fit_time + per_sample * len(samples), fit_time, per_sample, len(timed))
