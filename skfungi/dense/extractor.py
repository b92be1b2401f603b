"""Dense FUNGI, one batch of images at a time: patch tokens -> negatives -> per-token gradients.

For a target layer ``y_t = W a_t + b`` applied to every patch token ``t``,
the gradient of an image's loss ``L`` is ``sum_t g_t [a_t; 1]^T`` with
``g_t = dL/dy_t``. Dense FUNGI keeps the terms apart: token ``t``'s feature
is the rank-1 matrix ``G_t = g_t [a_t; 1]^T``, projected to ``k`` numbers.
:class:`~skfungi._engine.gradients.GradientCapture` already returns the per-token
factors ``(g, a)``; each token is handed to the projection as a sample of one
token, so that

- a dense projection ``P`` (``k x d_out (d_in + 1)``, regenerated from its
  seed) forms each ``G_t`` and multiplies: ``k d_out (d_in + 1)`` multiply-adds
  per token, which is what the reference implementation spends;
- the Kronecker projection ``P_out (x) P_in`` never forms ``G_t``:
  ``P vec(G_t) = (P_out g_t) (x) (P_in [a_t; 1])``, ``k_out d_out + k_in (d_in + 1)``
  multiply-adds per token (``k = k_out k_in``). Same gradients, another random matrix.

A batch's loss is the sum of its images' losses and an image's negatives come
from the fitted support index alone, so a token's feature never depends on
the other images of its batch.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch

from .._engine.gradients import GradientCapture
from .._engine.samples import KeyedSample
from .._utils.device import loss_dtype
from .._utils.numerics import l2_normalize
from .._utils.seeding import derive_seed, generator
from ..losses._base import random_head
from ..views.image import resize
from .index import PatchIndex
from .loss import head_latents, token_infonce
from .tokens import grid_tokens, layer_token_rows

__all__ = ["BLOCKS", "DenseExtractor", "project_tokens"]

BLOCKS = ("embedding", "gradient", "neighbors")
# per-token gradients formed at once by a dense projection: bounds memory, and amortises the
# regeneration of the matrix (about 2 s for MobileNetV2's 1280 x 409,600) over as many tokens as fit
DENSE_CHUNK_BYTES = 256 * 2**20


def project_tokens(projection, g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``(N, T, k)`` projections of the per-token gradients ``g[n, t] [a[n, t]]^T``.

    Every token is reduced as a sample holding one token (see the projection
    protocol in ``skfungi.projection``), in chunks of at most
    ``DENSE_CHUNK_BYTES`` of flattened float32 gradients.
    """
    n_images, n_tokens = g.shape[:2]
    g_rows, a_rows = g.reshape(n_images * n_tokens, 1, -1), a.reshape(n_images * n_tokens, 1, -1)
    chunk = max(1, DENSE_CHUNK_BYTES // (4 * g.shape[-1] * a.shape[-1]))
    parts = [
        projection.project(projection.reduce(g_rows[start : start + chunk], a_rows[start : start + chunk]))
        for start in range(0, len(g_rows), chunk)
    ]
    return torch.cat(parts).unflatten(0, (n_images, n_tokens))


class DenseExtractor:
    """Per-token blocks ``embedding``, ``gradient`` and ``neighbors`` for batches of images.

    Parameters
    ----------
    backbone : ImageBackbone
    token_fn : callable
        ``token_fn(module, inputs) -> (N, C, h, w)`` patch tokens.
    input_size : int
        Images are resized (whole, aspect not kept) to ``input_size`` squared.
    blocks : tuple of str
        The blocks to compute, among :data:`BLOCKS`.
    seed : int
    layer_path : str or None
        Target layer (needed for ``"gradient"``).
    projection : projection object or None
    latent_dim, n_negatives, negative_fraction, temperature, algorithm, ef_construction
        See :class:`~skfungi.dense.DenseFungiTransformer`.
    """

    def __init__(
        self,
        backbone,
        token_fn,
        input_size: int,
        blocks: tuple[str, ...],
        seed: int,
        *,
        layer_path=None,
        projection=None,
        latent_dim: int = 96,
        n_negatives: int = 2,
        negative_fraction: float = 0.5,
        temperature: float = 0.07,
        algorithm: str = "auto",
        ef_construction: int = 200,
    ):
        self.backbone = backbone
        self.token_fn = token_fn
        self.input_size = int(input_size)
        self.blocks = tuple(blocks)
        self.seed = seed
        self.layer_path = layer_path
        self.projection = projection
        self.latent_dim = latent_dim
        self.n_negatives = n_negatives
        self.negative_fraction = negative_fraction
        self.temperature = temperature
        self.algorithm = algorithm
        self.ef_construction = ef_construction

    @property
    def needs_negatives(self) -> bool:
        return "gradient" in self.blocks or "neighbors" in self.blocks

    # -- fitting --------------------------------------------------------------

    def fit(self, samples, batch_size: int) -> DenseExtractor:
        """Probe the token grid; draw the head; index the kept patches of ``samples`` (the support set)."""
        with torch.no_grad():
            grid = self.token_fn(self.backbone.module, self._inputs([KeyedSample.of(self.backbone, samples, 0)]))
        self.token_dim, self.grid_shape = int(grid.shape[1]), (int(grid.shape[-2]), int(grid.shape[-1]))
        self.n_tokens = self.grid_shape[0] * self.grid_shape[1]
        if "gradient" in self.blocks:
            seed = derive_seed(self.seed, "dense", "head")
            self.head = random_head(self.token_dim, self.latent_dim, seed, loss_dtype(grid.device), grid.device)
        if self.needs_negatives:
            self._fit_negatives(samples, batch_size)
        return self

    def _fit_negatives(self, samples, batch_size: int) -> None:
        n_kept = max(1, round(self.negative_fraction * self.n_tokens))
        self.groups = {}  # image key -> group id (the index of its first occurrence)
        self.index = PatchIndex(
            self.algorithm,
            ef_construction=self.ef_construction,
            random_state=derive_seed(self.seed, "dense", "negative-index"),
        )
        for start in range(0, len(samples), batch_size):
            batch = [
                KeyedSample.of(self.backbone, samples, i) for i in range(start, min(start + batch_size, len(samples)))
            ]
            units = self.unit_tokens(batch).float().cpu().numpy()
            rows, groups = [], []
            for offset, keyed in enumerate(batch):
                group = self.groups.setdefault(keyed.key, start + offset)
                kept = torch.randperm(
                    self.n_tokens, generator=generator(derive_seed(self.seed, "dense", "keep", keyed.key))
                )
                rows.append(units[offset, np.sort(kept[:n_kept].numpy())])
                groups.append(np.full(n_kept, group))
            vectors, groups = np.concatenate(rows), np.concatenate(groups)
            if start == 0:
                self.index.fit(vectors, groups, expected_rows=len(samples) * n_kept)
            else:
                self.index.partial_fit(vectors, groups)
        if len(self.groups) < 2:
            raise ValueError(
                "the negatives of a patch are patches of other fitted images: fit needs at least 2 distinct "
                f"images, got {len(self.groups)}."
            )

    # -- extracting -----------------------------------------------------------

    def unit_tokens(self, batch: list[KeyedSample]) -> torch.Tensor:
        """``(N, T, C)`` L2-normalised patch tokens, without any gradient."""
        with torch.no_grad():
            return self._unit_tokens(self._inputs(batch))

    def batch_blocks(self, batch: list[KeyedSample]) -> dict[str, torch.Tensor]:
        """``name -> (N, T, width)`` float32 blocks, each row L2-normalised."""
        inputs = self._inputs(batch)
        with_gradient = "gradient" in self.blocks
        capture = GradientCapture(self.backbone.module, self.layer_path) if with_gradient else nullcontext()
        out = {}
        # under no_grad the trunk records nothing; the capture's hook switches autograd on at the layer
        with capture, torch.no_grad():
            units = self._unit_tokens(inputs)
            if "embedding" in self.blocks:
                out["embedding"] = units.detach()
            if self.needs_negatives:
                negatives = self._negatives(units.detach(), batch)  # (N, T, K, C)
                if "neighbors" in self.blocks:
                    out["neighbors"] = l2_normalize(negatives.mean(dim=2))
            if with_gradient:
                g, a = self._token_factors(capture, units, negatives)
                out["gradient"] = l2_normalize(project_tokens(self.projection, g, a))
        return {name: out[name].detach().float() for name in self.blocks}

    def token_factors(self, batch: list[KeyedSample]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token gradient factors ``g (N, T, d_out)`` and ``a (N, T, d_in [+ 1])``, in grid order:
        token ``t`` of image ``n`` has the gradient ``outer(g[n, t], a[n, t])``."""
        inputs = self._inputs(batch)
        with GradientCapture(self.backbone.module, self.layer_path) as capture, torch.no_grad():
            units = self._unit_tokens(inputs)
            return self._token_factors(capture, units, self._negatives(units.detach(), batch))

    def _token_factors(self, capture, units: torch.Tensor, negatives: torch.Tensor):
        latents, negative_latents = head_latents(units, self.head), head_latents(negatives, self.head)
        loss = token_infonce(latents, negative_latents, self.temperature).sum()
        g, a = capture.factors(loss, units.shape[0], keep_all_tokens=True)
        n_prefix = getattr(self.backbone.module, "num_prefix_tokens", 0)
        rows = layer_token_rows(g.shape[1], self.n_tokens, n_prefix, self.layer_path)
        return g[:, rows], a[:, rows]

    def _inputs(self, batch: list[KeyedSample]) -> torch.Tensor:
        views = torch.stack([resize(keyed.sample, self.input_size) for keyed in batch])
        return self.backbone.prepare(views)

    def _unit_tokens(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(N, T, C)`` patch tokens, L2-normalised, in the losses' dtype."""
        tokens = grid_tokens(self.token_fn(self.backbone.module, inputs), inputs.shape[0])
        return l2_normalize(tokens.to(loss_dtype(tokens.device)))

    def _negatives(self, units: torch.Tensor, batch: list[KeyedSample]) -> torch.Tensor:
        """``(N, T, K, C)`` unit features of each token's nearest kept support patches of other images."""
        queries = units.float().cpu().numpy()
        found = []
        for offset, keyed in enumerate(batch):
            _, indices = self.index.search(queries[offset], self.n_negatives, exclude_group=self.groups.get(keyed.key))
            found.append(self.index.vectors(indices))
        return torch.from_numpy(np.stack(found)).to(device=units.device, dtype=units.dtype)
