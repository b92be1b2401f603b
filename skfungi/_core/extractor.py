"""The feature pipeline: views -> backbone -> losses -> per-sample gradients -> projection.

:class:`FeatureExtractor` holds the resolved parts of a fitted
:class:`~skfungi.FungiTransformer` and turns batches of samples into feature
rows. It never looks inside a sample: the backbone adapter builds inference
views and encodes views, the losses build their own views.

Batching: samples are processed ``batch_size`` at a time. Each loss takes
the views of as many whole samples as fit in ``max(batch_size, n_views)``
views, forwards them at most ``batch_size`` views at a time (a sample with
more views than that is split over several forwards), runs one backward for
them, and reduces their per-sample gradients;
the reductions of every loss are then projected together, for as many
consecutive batches as fit in ``PROJECTION_BUFFER_BYTES``, so a dense
projection is regenerated once per buffer rather than once per batch.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from ..losses import LossContext
from .device import autocast
from .freeze import frozen_eval
from .gradients import GradientCapture, layer_shape, resolve_layer
from .progress import report_progress
from .seeding import derive_seed, generator

__all__ = ["FeatureExtractor", "KeyedSample"]

logger = logging.getLogger("skfungi")

# Reduced gradients of consecutive batches are projected together up to this size, so that
# small batches do not regenerate a dense projection matrix each.
PROJECTION_BUFFER_BYTES = 64 * 2**20


class FeatureExtractor:
    """Computes ``[embedding | loss_1 | ... | loss_n]`` rows, each block L2-normalised."""

    def __init__(
        self,
        backbone,
        layer_path,
        losses,
        projection,
        include_embedding,
        batch_size,
        seed,
        verbose=0,
        embedding_dim=None,
        precision="float32",
        num_workers=0,
    ):
        self.backbone = backbone
        self.layer_path = layer_path
        self.losses = list(losses)
        self.projection = projection
        self.include_embedding = include_embedding
        self.batch_size = int(batch_size)
        self.seed = seed
        self.verbose = verbose
        self.embedding_dim = embedding_dim
        self.precision = precision
        self.num_workers = int(num_workers)
        self._gradient_capture = None

    # -- fitting ----------------------------------------------------------------

    def fit(self, samples, n_components) -> tuple[int, tuple[int, int]]:
        """Probe the backbone, fit the projection and every loss; returns (E, gradient shape)."""
        module = self.backbone.module
        with frozen_eval(module):
            shape = layer_shape(resolve_layer(module, self.layer_path))
            first = self.backbone.canonical(samples[0], 0)
            with torch.no_grad():
                probe = self._encode([self.backbone.inference_view(first)])
            embedding_dim = self.embedding_dim = probe.shape[-1]
            k = embedding_dim if n_components == "auto" else int(n_components)
            self.projection.fit(shape.gradient_shape, k, self.seed)
            context = LossContext(
                embedding_dim=embedding_dim,
                seed=self.seed,
                backbone=self.backbone,
                dtype=_loss_dtype(probe.device),
                device=probe.device,
                training_images=_TrainingSamples(samples, self.backbone),
                encode=self.encode,
            )
            for loss in self.losses:
                logger.info("fitting %s", type(loss).__name__)
                loss.fit(context)
        return embedding_dim, shape.gradient_shape

    def encode(self, loss, samples, n_views: int | None = None) -> torch.Tensor:
        """``(N, V, E)`` embeddings of ``loss``'s views of ``samples``, without gradient.

        ``samples`` are :class:`KeyedSample` (canonical sample and seeding key),
        as ``LossContext.training_images`` hands them out. ``n_views`` asks the
        loss for that many views per sample instead of its usual count. Views
        of consecutive samples share forwards: every forward but the last of
        each view group holds ``batch_size`` views.
        """
        samples = list(samples)
        pending: dict[int, list] = {}  # view group -> views awaiting a forward
        encoded: dict[int, list[torch.Tensor]] = {}
        with torch.no_grad():
            for keyed in self._progress(samples, f"encoding {loss.name} views", unit="sample"):
                for group_index, group in enumerate(self._views(loss, keyed, n_views)):
                    queue = pending.setdefault(group_index, [])
                    queue.extend(group.unbind(0) if isinstance(group, torch.Tensor) else group)
                    while len(queue) >= self.batch_size:
                        encoded.setdefault(group_index, []).append(self._encode(_stacked(queue[: self.batch_size])))
                        del queue[: self.batch_size]
                report_progress("fit", 1)
            for group_index, queue in pending.items():
                if queue:
                    encoded.setdefault(group_index, []).append(self._encode(_stacked(queue)))
        groups = [torch.cat(encoded[index]).unflatten(0, (len(samples), -1)) for index in sorted(encoded)]
        return torch.cat(groups, dim=1).to(_loss_dtype(groups[0].device))

    # -- transforming -------------------------------------------------------

    def transform(self, samples) -> np.ndarray:
        out = np.empty((len(samples), sum(self.block_widths())), dtype=np.float32)
        bar = self._bar(len(samples), "FUNGI features")
        pending = []  # (start, stop, embedding, reduced gradients) awaiting one shared projection
        with frozen_eval(self.backbone.module):
            for start, stop, batch in self._decoded_batches(samples):
                pending.append((start, stop, *self._batch_blocks(batch)))
                if sum(_nbytes(reduced) for *_, reduced in pending) >= PROJECTION_BUFFER_BYTES:
                    self._write_features(pending, out)
                    pending = []
                if bar is not None:
                    bar.update(stop - start)
                report_progress("transform", stop - start)
            if pending:
                self._write_features(pending, out)
        if bar is not None:
            bar.close()
        return out

    def _decoded_batches(self, samples):
        """``(start, stop, keyed samples)`` per batch; ``num_workers`` threads decode ahead."""
        n_samples, size = len(samples), self.batch_size
        ranges = [(start, min(start + size, n_samples)) for start in range(0, n_samples, size)]
        if not self.num_workers:
            for start, stop in ranges:
                yield start, stop, [self._keyed(samples, i) for i in range(start, stop)]
            return
        # Decoding (files, PIL, resizing) runs in threads while the backbone computes; at most two
        # batches are decoded ahead, so memory stays bounded whatever the number of samples.
        with ThreadPoolExecutor(self.num_workers, thread_name_prefix="skfungi-decode") as pool:
            pending, submitted = deque(), 0
            for start, stop in ranges:
                while submitted < min(n_samples, stop + 2 * size):
                    pending.append(pool.submit(self._keyed, samples, submitted))
                    submitted += 1
                yield start, stop, [pending.popleft().result() for _ in range(stop - start)]

    def block_widths(self) -> list[int]:
        widths = [self.projection.n_components_] * len(self.losses)
        return ([self.embedding_dim] if self.include_embedding else []) + widths

    def _batch_blocks(self, batch):
        """The batch's embedding (or None) and its reduced gradients, losses stacked loss-major (or None)."""
        embedding, reduced = None, {}
        if self.include_embedding or any(loss.uses_inference_view for loss in self.losses):
            embedding, reduced = self._inference_pass(batch)
        view_losses = [loss for loss in self.losses if not loss.uses_inference_view]
        for loss in view_losses:
            reduced[loss.name] = self._loss_pass(loss, batch)
        stacked = torch.cat([reduced[loss.name] for loss in self.losses]) if self.losses else None
        return (embedding if self.include_embedding else None), stacked

    def _write_features(self, pending, out: np.ndarray) -> None:
        """Project the pending batches' gradients at once (one regeneration of a dense matrix)."""
        projected = []
        if self.losses:
            projected = self.projection.project(torch.cat([reduced for *_, reduced in pending]))
            projected = projected.split([len(reduced) for *_, reduced in pending])
        for index, (start, stop, embedding, _) in enumerate(pending):
            blocks = [] if embedding is None else [embedding]
            if self.losses:
                blocks.extend(projected[index].split(stop - start))
            features = torch.cat([F.normalize(block, dim=1) for block in blocks], dim=1)
            out[start:stop] = features.detach().to(device="cpu", dtype=torch.float32).numpy()

    def _inference_pass(self, batch):
        """Embeddings of the inference view, plus the losses that reuse that forward."""
        sharing = [loss for loss in self.losses if loss.uses_inference_view]
        views = [self.backbone.inference_view(keyed.sample) for keyed in batch]
        reduced = {}
        capture = self._capture() if sharing else nullcontext()
        with capture, torch.set_grad_enabled(bool(sharing)):
            embedding = self._encode(views)
            for position, loss in enumerate(sharing):
                last = position == len(sharing) - 1
                losses = loss.sample_losses(embedding.unsqueeze(1).to(_loss_dtype(embedding.device))).sum()
                reduced[loss.name] = self.projection.reduce(*capture.factors(losses, len(batch), retain_graph=not last))
        return embedding.detach(), reduced

    def _loss_pass(self, loss, batch) -> torch.Tensor:
        """Reduced per-sample gradients of ``loss`` for a batch, one backward per view group."""
        reduced = []
        for start, stop in self._view_groups(loss, len(batch)):
            with self._capture() as capture, torch.enable_grad():
                embeddings = self._encode_views(loss, batch[start:stop])
                losses = loss.sample_losses(embeddings).sum()
                reduced.append(self.projection.reduce(*capture.factors(losses, stop - start)))
        return torch.cat(reduced)

    # -- helpers ------------------------------------------------------------

    def _progress(self, iterable, description: str, unit: str, total: int | None = None):
        """``iterable`` behind a tqdm progress bar (on stderr) when ``verbose``, else as is."""
        if not self.verbose:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=description, unit=unit, total=total)

    def _bar(self, total: int, description: str):
        """A tqdm bar counting samples (on stderr) when ``verbose``, else None."""
        if not self.verbose:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=description, unit="sample")

    def _capture(self) -> GradientCapture:
        if self._gradient_capture is None:
            self._gradient_capture = GradientCapture(self.backbone.module, self.layer_path)
        return self._gradient_capture

    def _keyed(self, samples, index: int) -> KeyedSample:
        return KeyedSample.of(self.backbone, samples, index)

    def _encode(self, views) -> torch.Tensor:
        """The backbone's embeddings at ``precision``, returned in float32 or wider.

        The forward runs under ``torch.no_grad()``: inside a gradient capture the hook
        switches autograd on at the target layer, so only the tail after it is recorded.
        """
        with torch.no_grad(), autocast(self.precision, self.backbone.device):
            embedding = self.backbone.encode(views)
        return embedding.float() if embedding.dtype in (torch.float16, torch.bfloat16) else embedding

    def _view_groups(self, loss, n_samples):
        """``(start, stop)`` ranges of whole samples whose views fit in one forward."""
        per_forward = max(1, self.batch_size // loss.view_count(self.backbone))
        for start in range(0, n_samples, per_forward):
            yield start, min(start + per_forward, n_samples)

    def _views(self, loss, keyed: KeyedSample, n_views: int | None = None) -> list:
        """``loss``'s views of one sample, seeded by the estimator's seed, the loss and the sample's key."""
        extra = {} if n_views is None else {"n_views": n_views}
        rng = generator(derive_seed(self.seed, "views", loss.name, keyed.key))
        return loss.views(keyed.sample, self.backbone, rng, **extra)

    def _encode_views(self, loss, samples) -> torch.Tensor:
        """``(S, V, E)``: each view group of ``loss`` encoded over all samples at once, sample-major,
        in the losses' dtype."""
        per_sample = [self._views(loss, keyed) for keyed in samples]
        encoded = [
            self._encode_chunked(_concat(groups)).unflatten(0, (len(samples), -1))
            for groups in zip(*per_sample, strict=True)
        ]
        return torch.cat(encoded, dim=1).to(_loss_dtype(encoded[0].device))

    def _encode_chunked(self, views) -> torch.Tensor:
        """Embeddings of one view group in forwards of at most ``batch_size`` views.

        A group holds more views than ``batch_size`` only for a single sample
        (e.g. SimCLR's 49 patches): its forwards then each record a slice of
        that sample's views, and the gradient capture sums their tokens.
        """
        if len(views) <= self.batch_size:
            return self._encode(views)
        chunks = range(0, len(views), self.batch_size)
        return torch.cat([self._encode(views[start : start + self.batch_size]) for start in chunks])


def _nbytes(tensor: torch.Tensor | None) -> int:
    return 0 if tensor is None else tensor.numel() * tensor.element_size()


def _loss_dtype(device: torch.device) -> torch.dtype:
    """Losses and heads run in float64 (except where a device has none): the KL gradient,
    softmax minus uniform over T, loses about four digits to cancellation in float32, which
    would let rounding in the backbone's batched matmuls show in a sample's features."""
    return torch.float32 if device.type == "mps" else torch.float64


def _concat(groups):
    """One view group over samples: a tensor when the views stack, else a flat list of views."""
    if all(isinstance(group, torch.Tensor) for group in groups) and len({group.shape[1:] for group in groups}) == 1:
        return torch.cat(list(groups))
    return [view for group in groups for view in group]


def _stacked(views):
    """Views of one group as one tensor when they stack, else as a list."""
    if all(isinstance(view, torch.Tensor) for view in views) and len({view.shape for view in views}) == 1:
        return torch.stack(list(views))
    return list(views)


class KeyedSample:
    """A canonical sample and the key that seeds its views.

    The key is a digest of the *raw* sample, as the input collection yields
    it, never of anything computed from it (such as audio feature frames):
    floating-point kernels may round differently with the thread count or the
    machine, and a key that moved by one bit would draw other views. It is
    computed on first use (only losses with views need it).
    """

    __slots__ = ("_backbone", "_key", "_raw", "sample")

    def __init__(self, sample, raw, backbone):
        self.sample = sample
        self._raw = raw
        self._backbone = backbone
        self._key = None

    @classmethod
    def of(cls, backbone, samples, index: int) -> KeyedSample:
        raw = samples[index]  # may decode a file
        return cls(backbone.canonical(raw, index), raw, backbone)

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = self._backbone.sample_key(self._raw)
            self._raw = None
        return self._key


class _TrainingSamples:
    """Training samples decoded on access, as :class:`KeyedSample` (what ``encode`` takes)."""

    def __init__(self, samples, backbone):
        self._samples = samples
        self._backbone = backbone

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> KeyedSample:
        return KeyedSample.of(self._backbone, self._samples, index)
