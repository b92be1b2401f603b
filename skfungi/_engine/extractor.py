"""The feature pipeline: views -> backbone -> losses -> per-sample gradients -> projection.

:class:`FeatureExtractor` holds the fitted parts of a
:class:`~skfungi.FungiTransformer` (backbone adapter, target layer, blocks,
projection, seed) and turns samples into feature rows; how it runs (batch
size, decoding threads, precision, progress bars, what to do with non-finite
rows, where negative banks are stored) is given per call as
:class:`RunOptions`, so that ``set_params`` after ``fit`` takes effect; one
call with its options is an :class:`ExtractionRun`. It never looks inside a
sample: the backbone adapter builds inference views and embeds views, the
blocks' views come from :mod:`skfungi.views`.

Blocks: a gradient block (a loss) is the projected per-sample gradient of
its loss; a no-gradient block (:class:`~skfungi.losses.ViewAverage`) is the
mean embedding of a loss's views, the same views with the same seeds (those
of its ``view_source``), without any gradient.

Batching: samples are processed ``batch_size`` at a time. Each loss takes
the views of as many whole samples as fit in ``max(batch_size, n_views)``
views, forwards them at most ``batch_size`` views at a time (a sample with
more views than that is split over several forwards), runs one backward for
them, and reduces their per-sample gradients; the reductions of every loss are
then projected together, for as many consecutive batches as fit in
``PROJECTION_BUFFER_BYTES``, so a dense projection is regenerated once per
buffer rather than once per batch.

The stages run under ``torch.profiler.record_function`` labels (``LABELS``),
so a profiler (and ``benchmarks/throughput.py``) can attribute time to them.
"""

from __future__ import annotations

import copy
import functools
import logging
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.profiler import record_function

from .._utils.device import autocast, loss_dtype
from .._utils.freeze import frozen_eval
from .._utils.progress import SampleCounter, listening, report_progress
from .._utils.seeding import derive_seed, generator
from .._utils.threads import counted_flops, thread_count, torch_threads
from ..backbones.layers import layer_shape, resolve_layer
from ..inputs.lazy import LazySequence
from ..losses import LossContext
from .bank_cache import BankEncoding, cached_bank
from .gradients import GradientCapture, check_capture
from .rows import NonFiniteFeaturesError, finite_rows, listed, write_rows
from .samples import DECODE_LABEL, KeyedSample, concat_groups, decoded_batches, stack_views

__all__ = ["LABELS", "ExtractionRun", "FeatureExtractor", "NonFiniteFeaturesError", "RunOptions"]

logger = logging.getLogger("skfungi")

# Reduced gradients of consecutive batches are projected together up to this size, so that
# small batches do not regenerate a dense projection matrix each.
PROJECTION_BUFFER_BYTES = 64 * 2**20

# torch.profiler labels of the stages (benchmarks/throughput.py reads them).
LABELS = {
    "decode": DECODE_LABEL,
    **{stage: f"skfungi.{stage}" for stage in ("views", "forward", "loss", "backward", "project")},
}


@dataclass(frozen=True)
class RunOptions:
    """How one ``fit`` or ``transform`` runs (the estimator's current settings)."""

    include_embedding: bool = True
    batch_size: int = 32
    num_workers: int = 0
    precision: str = "float32"
    verbose: int = 0
    on_non_finite: str = "raise"
    num_threads: int | str | None = "auto"  # torch's threads for the call (see skfungi._utils.threads)
    bank_cache: Path | None = None  # folder of stored negative banks (the estimator's memory); None: no cache


class FeatureExtractor:
    """Computes ``[embedding | block_1 | ... | block_n]`` rows, each block L2-normalised.

    Parameters
    ----------
    backbone : Backbone
        The fitted backbone adapter.
    layer_path : str or None
        Dotted path of the target layer (None when no block takes a gradient).
    blocks : list of FeatureBlock
        The blocks after the embedding, in output order: fitted in :meth:`fit`.
    projection : projection object
        Fitted in :meth:`fit` with the layer's gradient shape.
    seed : int
        The estimator's base seed.
    """

    def __init__(self, backbone, layer_path: str | None, blocks, projection, seed: int):
        self.backbone = backbone
        self.layer_path = layer_path
        self.blocks = list(blocks)
        self.projection = projection
        self.seed = seed
        self.embedding_dim = None
        self.gradient_shape = None
        self.flops_per_view = None

    @property
    def losses(self) -> list:
        """The blocks that are projected gradients (the losses), in output order."""
        return [block for block in self.blocks if block.needs_gradient]

    # -- fitting ----------------------------------------------------------------

    def fit(self, samples, n_components, options: RunOptions) -> FeatureExtractor:
        """Probe the backbone, fit the projection and every block."""
        with frozen_eval(self.backbone.module):
            view = self.backbone.inference_view(KeyedSample.of(self.backbone, samples, 0).sample)
            with torch_threads(thread_count(options.num_threads, None, options.batch_size)):  # an int is kept
                probe, self.flops_per_view = counted_flops(lambda: ExtractionRun(self, options).embeddings([view]))
            self.embedding_dim = probe.shape[-1]
            if self.losses:
                self._fit_projection(n_components)
            context = LossContext(
                embedding_dim=self.embedding_dim,
                seed=self.seed,
                backbone=self.backbone,
                dtype=loss_dtype(probe.device),
                device=probe.device,
                training_samples=LazySequence(samples, functools.partial(KeyedSample.from_raw, backbone=self.backbone)),
                negative_bank=functools.partial(self._negative_bank, options, probe.device),
            )
            with self._threads(options):
                # the hook's gradient is autograd's (not checked compiled: a second graph takes minutes to compile)
                if self.losses and getattr(self.backbone.module, "_compiled_call_impl", None) is None:
                    check_capture(self.backbone.module, self.layer_path, lambda: self.backbone.embed([view]))
                for block in self.blocks:
                    logger.info("fitting %s", type(block).__name__)
                    block.fit(context)
        return self

    def _threads(self, options: RunOptions):
        """The torch thread count of a call with ``options`` (``num_threads``, see ``skfungi._utils.threads``)."""
        flops = getattr(self, "flops_per_view", None)  # absent from extractors pickled before it was counted
        return torch_threads(thread_count(options.num_threads, flops, options.batch_size))

    def _fit_projection(self, n_components) -> None:
        shape = layer_shape(resolve_layer(self.backbone.module, self.layer_path))
        self.gradient_shape = shape.gradient_shape
        k = self.embedding_dim if n_components == "auto" else int(n_components)
        if k > shape.gradient_dim:
            raise ValueError(
                f"projection_dim={k} exceeds the {shape.gradient_dim} entries of the gradient of layer "
                f"{self.layer_path!r} ({shape.gradient_shape[0]} x {shape.gradient_shape[1]}); a projection to "
                "more dimensions than that adds nothing. Use projection_dim='auto' or a smaller int."
            )
        self.projection.fit(shape.gradient_shape, k, self.seed)

    def _negative_bank(self, options: RunOptions, device, loss, samples, n_views: int, latents) -> torch.Tensor:
        """``LossContext.negative_bank``: the latents of ``n_views`` of ``loss``'s views of each of ``samples``,
        rows sample-major, read from the bank cache when a verified copy is stored there."""
        run = ExtractionRun(self, options)

        def encode(items, report: bool = True) -> torch.Tensor:
            embeddings = run.view_embeddings(
                loss, list(items), n_views, report_as="fit" if report else None, refuse_non_finite=report
            )
            return latents(embeddings).flatten(0, 1)

        encoding = BankEncoding(
            self.backbone,
            self.seed,
            options.precision,
            options.batch_size,
            loss_dtype(device),
            device,
            options.bank_cache,
        )
        return cached_bank(encoding, loss, samples, encode)

    # -- transforming -------------------------------------------------------

    def transform(self, samples, options: RunOptions) -> np.ndarray:
        """Feature rows of ``samples`` (float32), in order."""
        with self._threads(options):
            return ExtractionRun(self, options).transform(samples)

    def to(self, device: torch.device, memo: dict | None = None) -> FeatureExtractor:
        """A shallow copy whose backbone and blocks live on ``device`` (the given module is never moved in place;
        ``memo`` keeps one copy per module shared by several objects)."""
        moved = copy.copy(self)
        moved.backbone = self.backbone.to(device, memo)
        moved.blocks = [block.to(device) for block in self.blocks]
        return moved

    def block_names(self, include_embedding: bool) -> list[str]:
        return (["embedding"] if include_embedding else []) + [block.name for block in self.blocks]

    def block_widths(self, include_embedding: bool) -> list[int]:
        widths = [
            self.projection.n_components_ if block.needs_gradient else self.embedding_dim for block in self.blocks
        ]
        return ([self.embedding_dim] if include_embedding else []) + widths


class ExtractionRun:
    """One ``fit`` or ``transform`` call of a :class:`FeatureExtractor` with its :class:`RunOptions`."""

    def __init__(self, extractor: FeatureExtractor, options: RunOptions):
        self.extractor = extractor
        self.backbone = extractor.backbone
        self.options = options
        self.batch_size = options.batch_size
        self._gradient_capture = None

    # -- the stream of batches ------------------------------------------------

    def transform(self, samples) -> np.ndarray:
        extractor, options = self.extractor, self.options
        out = np.empty((len(samples), sum(extractor.block_widths(options.include_embedding))), dtype=np.float32)
        bar = self._bar(len(samples), "FUNGI features")
        progress = SampleCounter("transform", bar)
        pending = []  # (start, stop, blocks, reduced gradients) awaiting one shared projection
        with frozen_eval(self.backbone.module):
            for start, stop, batch in decoded_batches(self.backbone, samples, self.batch_size, options.num_workers):
                pending.append((start, stop, *self._batch_blocks(batch, progress)))
                if sum(_nbytes(reduced) for *_, reduced in pending) >= PROJECTION_BUFFER_BYTES:
                    self._write_features(pending, out)
                    pending = []
                progress.reach(stop)
            if pending:
                self._write_features(pending, out)
        if bar is not None:
            bar.close()
        return out

    def _batch_blocks(self, batch, progress: SampleCounter):
        """The batch's blocks before projection: ``{name: (S, E) tensor}`` for the embedding and the
        no-gradient blocks, and the reduced gradients of the losses stacked loss-major (or None).

        ``progress`` advances as each pass finishes a group of samples, by the pass's share of the views
        a sample has in all (so the bar moves about once per sample, whatever the batch size)."""
        extractor = self.extractor
        blocks, reduced = {}, {}
        shares = self._view_shares()
        if "embedding" in shares:
            blocks["embedding"], reduced = self._inference_pass(batch)
            progress.advance(len(batch) * shares["embedding"])
        for block in extractor.blocks:
            if not block.needs_gradient:
                step = functools.partial(progress.advance, shares[block.name])
                blocks[block.name] = self.view_embeddings(block, batch, on_sample=step).mean(dim=1)
            elif not block.uses_inference_view:
                reduced[block.name] = self._loss_pass(block, batch, progress, shares[block.name])
        losses = extractor.losses
        stacked = torch.cat([reduced[loss.name] for loss in losses]) if losses else None
        return blocks, stacked

    def _write_features(self, pending, out: np.ndarray) -> None:
        """Project the pending batches' gradients at once (one regeneration of a dense matrix), then
        normalise every block and write the rows."""
        extractor, options = self.extractor, self.options
        losses = [loss.name for loss in extractor.losses]
        projected = [None] * len(pending)
        if losses:
            with record_function(LABELS["project"]):
                stacked = extractor.projection.project(torch.cat([reduced for *_, reduced in pending]))
            projected = stacked.split([len(reduced) for *_, reduced in pending])
        names = extractor.block_names(options.include_embedding)
        for (start, stop, blocks, _), gradients in zip(pending, projected, strict=True):
            if gradients is not None:
                blocks = blocks | dict(zip(losses, gradients.split(stop - start), strict=True))
            write_rows(out, start, blocks, names, losses, options.on_non_finite)

    # -- one batch ------------------------------------------------------------

    def _inference_pass(self, batch):
        """Embeddings of the inference view, plus the losses that reuse that forward."""
        sharing = [loss for loss in self.extractor.losses if loss.uses_inference_view]
        views = [self.backbone.inference_view(keyed.sample) for keyed in batch]
        reduced = {}
        capture = self._capture() if sharing else nullcontext()
        with capture, torch.set_grad_enabled(bool(sharing)):
            embedding = self.embeddings(views)
            for position, loss in enumerate(sharing):
                last = position == len(sharing) - 1
                with record_function(LABELS["loss"]):
                    losses = loss.sample_losses(embedding.unsqueeze(1).to(loss_dtype(embedding.device))).sum()
                with record_function(LABELS["backward"]):
                    factors = capture.factors(losses, len(batch), retain_graph=not last)
                    reduced[loss.name] = self.extractor.projection.reduce(*factors)
        return embedding.detach(), reduced

    def _loss_pass(self, loss, batch, progress: SampleCounter | None = None, share: float = 0.0) -> torch.Tensor:
        """Reduced per-sample gradients of ``loss`` for a batch, one backward per view group (each
        advancing ``progress`` by ``share`` of a sample per sample)."""
        reduced = []
        for start, stop in self._view_groups(loss, len(batch)):
            with self._capture() as capture, torch.enable_grad():
                embeddings = self._forward_views(loss, batch[start:stop])
                with record_function(LABELS["loss"]):
                    losses = loss.sample_losses(embeddings).sum()
                with record_function(LABELS["backward"]):
                    reduced.append(self.extractor.projection.reduce(*capture.factors(losses, stop - start)))
            if progress is not None:
                progress.advance((stop - start) * share)
        return torch.cat(reduced)

    def _view_shares(self) -> dict[str, float]:
        """Each pass's share of a sample's forwards: ``"embedding"`` (the inference view, with the losses
        that reuse it) and every other block, by its views per sample."""
        extractor, views = self.extractor, {}
        if self.options.include_embedding or any(loss.uses_inference_view for loss in extractor.losses):
            views["embedding"] = 1
        for block in extractor.blocks:
            if not (block.needs_gradient and block.uses_inference_view):
                views[block.name] = block.view_count(self.backbone)
        total = sum(views.values())
        return {name: count / total for name, count in views.items()}

    # -- embeddings ---------------------------------------------------------

    def embeddings(self, views) -> torch.Tensor:
        """``(N, E)``: the backbone's embeddings of ``views`` at ``precision``, in float32 or wider.

        The forward runs under ``torch.no_grad()``: inside a gradient capture the hook
        switches autograd on at the target layer, so only the tail after it is recorded.
        """
        with (
            torch.no_grad(),
            autocast(self.options.precision, self.backbone.device),
            record_function(LABELS["forward"]),
        ):
            embedding = self.backbone.embed(views)
        return embedding.float() if embedding.dtype in (torch.float16, torch.bfloat16) else embedding

    def view_embeddings(
        self, block, samples, n_views=None, *, report_as: str | None = None, refuse_non_finite=False, on_sample=None
    ) -> torch.Tensor:
        """``(N, V, E)``: embeddings of ``block``'s views of the :class:`KeyedSample` ``samples``, without
        gradient, in the losses' dtype.

        ``n_views`` asks for that many views per sample instead of the usual
        count. Views of consecutive samples share forwards: every forward but
        the last of each view group holds ``batch_size`` views. Each sample is
        reported as done to the progress listener under ``report_as`` (and
        shown on a bar when ``verbose``), and ``on_sample()`` is called after
        it; with ``refuse_non_finite`` a sample whose embeddings are not finite
        is an error naming it (a negative bank may not hold it).
        """
        pending: dict[int, list] = {}  # view group -> views awaiting a forward
        embedded: dict[int, list[torch.Tensor]] = {}
        with torch.no_grad():
            for keyed in self._progress(samples, f"encoding {block.name} views", report_as):
                for group_index, group in enumerate(self._views_of(block, keyed, n_views)):
                    queue = pending.setdefault(group_index, [])
                    queue.extend(group.unbind(0) if isinstance(group, torch.Tensor) else group)
                    while len(queue) >= self.batch_size:
                        embedded.setdefault(group_index, []).append(
                            self.embeddings(stack_views(queue[: self.batch_size]))
                        )
                        del queue[: self.batch_size]
                if report_as is not None:
                    report_progress(report_as, 1)
                if on_sample is not None:
                    on_sample()
            for group_index, queue in pending.items():
                if queue:
                    embedded.setdefault(group_index, []).append(self.embeddings(stack_views(queue)))
        groups = [torch.cat(embedded[index]).unflatten(0, (len(samples), -1)) for index in sorted(embedded)]
        embeddings = torch.cat(groups, dim=1).to(loss_dtype(groups[0].device))
        bad = ~finite_rows(embeddings.flatten(1))
        if refuse_non_finite and bad.any():
            indices = [samples[int(i)].index for i in torch.nonzero(bad).flatten()]
            raise NonFiniteFeaturesError(
                f"the backbone's embeddings of {block.name}'s views of training sample(s) {listed(indices)} are not "
                f"finite (NaN or infinite); a negative bank may not hold them: leave them out of the fit data."
            )
        return embeddings

    def _forward_views(self, loss, samples) -> torch.Tensor:
        """``(S, V, E)``: each view group of ``loss`` forwarded over all samples at once, sample-major, in
        the losses' dtype (inside a gradient capture, which records the tail after the target layer)."""
        per_sample = [self._views_of(loss, keyed) for keyed in samples]
        embedded = [
            self._embeddings_in_chunks(concat_groups(groups)).unflatten(0, (len(samples), -1))
            for groups in zip(*per_sample, strict=True)
        ]
        return torch.cat(embedded, dim=1).to(loss_dtype(embedded[0].device))

    def _embeddings_in_chunks(self, views) -> torch.Tensor:
        """Embeddings of one view group in forwards of at most ``batch_size`` views.

        A group holds more views than ``batch_size`` only for a single sample
        (e.g. SimCLR's 49 patches): its forwards then each record a slice of
        that sample's views, and the gradient capture sums their tokens.
        """
        if len(views) <= self.batch_size:
            return self.embeddings(views)
        chunks = range(0, len(views), self.batch_size)
        return torch.cat([self.embeddings(views[start : start + self.batch_size]) for start in chunks])

    # -- helpers ------------------------------------------------------------

    def _views_of(self, block, keyed: KeyedSample, n_views: int | None = None) -> list:
        """``block``'s views of one sample: those of its ``view_source``, seeded by the estimator's seed,
        that source's name and the sample's key."""
        source = block.view_source
        rng = generator(derive_seed(self.extractor.seed, "views", source.name, keyed.key))
        count = {} if n_views is None else {"n_views": n_views}  # a loss of one's own may take no count
        with record_function(LABELS["views"]):
            return source.views(keyed.sample, self.backbone, rng, **count)

    def _view_groups(self, loss, n_samples):
        """``(start, stop)`` ranges of whole samples whose views fit in one forward."""
        per_forward = max(1, self.batch_size // loss.view_count(self.backbone))
        for start in range(0, n_samples, per_forward):
            yield start, min(start + per_forward, n_samples)

    def _progress(self, iterable, description: str, report_as):
        """``iterable`` behind a tqdm bar (on stderr) when ``verbose`` and ``report_as``, else as is
        (also when a progress listener, such as the command line's bars, shows the progress)."""
        if not self.options.verbose or report_as is None or listening():
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=description, unit="sample")

    def _bar(self, total: int, description: str):
        """A tqdm bar counting samples (on stderr) when ``verbose`` and no progress listener shows them."""
        if not self.options.verbose or listening():
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=description, unit="sample")

    def _capture(self) -> GradientCapture:
        if self._gradient_capture is None:
            self._gradient_capture = GradientCapture(self.backbone.module, self.extractor.layer_path)
        return self._gradient_capture


def _nbytes(tensor: torch.Tensor | None) -> int:
    return 0 if tensor is None else tensor.numel() * tensor.element_size()
