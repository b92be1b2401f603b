"""The feature pipeline: views -> backbone -> losses -> per-sample gradients -> projection.

:class:`FeatureExtractor` holds the resolved parts of a fitted
:class:`~skfungi.FungiTransformer` and turns batches of decoded samples into
feature rows. The estimator class only does the scikit-learn glue.

Batching: samples are processed ``batch_size`` at a time. Each loss forwards
the views of as many whole samples as fit in ``max(batch_size, n_views)``
images, runs one backward for them, and reduces their per-sample gradients;
the reductions of every loss in the batch are then projected together, so a
dense projection is regenerated once per batch.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from ._gradients import GradientCapture, layer_shape, resolve_layer
from ._seeding import content_key, derive_seed, generator
from .backbones import frozen_eval
from .losses import LossContext
from .views.image import center_view

__all__ = ["FeatureExtractor"]

logger = logging.getLogger("skfungi")


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
        self._gradient_capture = None

    # -- fitting -----------------------------------------------------------------

    def fit(self, images, n_components) -> tuple[int, tuple[int, int]]:
        """Probe the backbone, fit the projection and every loss; returns (E, gradient shape)."""
        module = self.backbone.module
        with frozen_eval(module):
            shape = layer_shape(resolve_layer(module, self.layer_path))
            first = self.backbone.canonical(images[0], 0)
            with torch.no_grad():
                probe = self._embed(center_view(first, self.backbone.input_size).unsqueeze(0))
            embedding_dim = self.embedding_dim = probe.shape[-1]
            k = embedding_dim if n_components == "auto" else int(n_components)
            self.projection.fit(shape.gradient_shape, k, self.seed)
            context = LossContext(
                embedding_dim=embedding_dim,
                seed=self.seed,
                image_size=self.backbone.input_size,
                dtype=probe.dtype,
                device=probe.device,
                training_images=_Canonical(images, self.backbone),
                encode=self.encode,
            )
            for loss in self.losses:
                logger.info("fitting %s", type(loss).__name__)
                loss.fit(context)
        return embedding_dim, shape.gradient_shape

    def encode(self, loss, images) -> torch.Tensor:
        """``(N, V, E)`` embeddings of ``loss``'s views of ``images``, without gradient."""
        keys = [content_key(image) for image in images]
        chunks = []
        for start, stop in self._view_groups(loss, len(images)):
            stacked = self._stacked_views(loss, images[start:stop], keys[start:stop])
            with torch.no_grad():
                chunks.append(torch.cat([self._embed(views).unflatten(0, (stop - start, -1)) for views in stacked], 1))
        return torch.cat(chunks)

    # -- transforming ---------------------------------------------------------

    def transform(self, images) -> np.ndarray:
        widths = self.block_widths()
        out = np.empty((len(images), sum(widths)), dtype=np.float32)
        batches = range(0, len(images), self.batch_size)
        if self.verbose:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="FUNGI features", unit="batch")
        with frozen_eval(self.backbone.module):
            for start in batches:
                stop = min(start + self.batch_size, len(images))
                batch = [self.backbone.canonical(images[i], i) for i in range(start, stop)]
                out[start:stop] = self._transform_batch(batch)
        return out

    def block_widths(self) -> list[int]:
        widths = [self.projection.n_components_] * len(self.losses)
        return ([self.embedding_dim] if self.include_embedding else []) + widths

    def _transform_batch(self, batch) -> np.ndarray:
        keys = [content_key(image) for image in batch]
        embedding, reduced = self._inference_pass(batch, keys)
        for loss in self.losses:
            if not loss.uses_inference_view:
                reduced[loss.name] = self._loss_pass(loss, batch, keys)
        blocks = [embedding] if self.include_embedding else []
        if self.losses:
            stacked = torch.cat([reduced[loss.name] for loss in self.losses])
            blocks.extend(self.projection.project(stacked).split(len(batch)))
        features = torch.cat([F.normalize(block, dim=1) for block in blocks], dim=1)
        return features.detach().to(device="cpu", dtype=torch.float32).numpy()

    def _inference_pass(self, batch, keys):
        """Embeddings of the inference view, plus the losses that reuse that forward."""
        sharing = [loss for loss in self.losses if loss.uses_inference_view]
        views = torch.stack([center_view(image, self.backbone.input_size) for image in batch])
        reduced = {}
        capture = self._capture() if sharing else nullcontext()
        with capture, torch.set_grad_enabled(bool(sharing)):
            embedding = self._embed(views)
            for position, loss in enumerate(sharing):
                last = position == len(sharing) - 1
                losses = loss.sample_losses(embedding.unsqueeze(1)).sum()
                reduced[loss.name] = self.projection.reduce(*capture.factors(losses, len(batch), retain_graph=not last))
        return embedding.detach(), reduced

    def _loss_pass(self, loss, batch, keys) -> torch.Tensor:
        """Reduced per-sample gradients of ``loss`` for a batch, one backward per view group."""
        reduced = []
        for start, stop in self._view_groups(loss, len(batch)):
            stacked = self._stacked_views(loss, batch[start:stop], keys[start:stop])
            with self._capture() as capture, torch.enable_grad():
                embeddings = torch.cat([self._embed(views).unflatten(0, (stop - start, -1)) for views in stacked], 1)
                losses = loss.sample_losses(embeddings).sum()
                reduced.append(self.projection.reduce(*capture.factors(losses, stop - start)))
        return torch.cat(reduced)

    # -- helpers --------------------------------------------------------------

    def _capture(self) -> GradientCapture:
        if self._gradient_capture is None:
            self._gradient_capture = GradientCapture(self.backbone.module, self.layer_path)
        return self._gradient_capture

    def _embed(self, views: torch.Tensor) -> torch.Tensor:
        return self.backbone.embed(self.backbone.prepare(views))

    def _view_groups(self, loss, n_samples):
        """``(start, stop)`` ranges of whole samples whose views fit in one forward."""
        per_forward = max(1, self.batch_size // loss.n_views(self.backbone.input_size))
        for start in range(0, n_samples, per_forward):
            yield start, min(start + per_forward, n_samples)

    def _stacked_views(self, loss, images, keys) -> list[torch.Tensor]:
        """Each view group of ``loss`` stacked over samples, sample-major."""
        size = self.backbone.input_size
        per_sample = [
            loss.views(image, size, generator(derive_seed(self.seed, "views", loss.name, key)))
            for image, key in zip(images, keys, strict=True)
        ]
        return [torch.cat(groups) for groups in zip(*per_sample, strict=True)]


class _Canonical:
    """Training samples decoded on access, with the backbone's channel count."""

    def __init__(self, images, backbone):
        self._images = images
        self._backbone = backbone

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self._backbone.canonical(self._images[index], index)
