"""DenseFungiTransformer: FUNGI features for every patch of an image (scikit-learn glue only)."""

from __future__ import annotations

import copy
from typing import ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

from .._engine.samples import KeyedSample
from .._utils.cloning import clone_sharing
from .._utils.device import resolve_device
from .._utils.freeze import frozen_eval
from .._utils.seeding import base_seed
from .._utils.sklearn_compat import HasMethods, StrOptions
from .._utils.validation import int_range, real_range
from ..backbones import Backbone, ImageBackbone, check_module, resolve_backbone
from ..backbones.layers import layer_shape, resolve_layer, target_layer
from ..backbones.timm import TimmBackbone
from ..projection import PROJECTIONS, make_projection
from .extractor import BLOCKS, DenseExtractor
from .index import ALGORITHMS
from .tokens import token_function

__all__ = ["FEATURE_SETS", "DenseFungiTransformer", "combine_blocks"]

# named feature sets -> the blocks they concatenate
FEATURE_SETS = {
    "embedding": ("embedding",),
    "fungi": ("embedding", "gradient"),
    "neighbors": ("embedding", "neighbors"),
}


def combine_blocks(blocks: dict[str, np.ndarray], names) -> np.ndarray:
    """``normalise(concat(blocks[name] for name in names))`` along the last axis (a single block as is)."""
    parts = [blocks[name] for name in names]
    if len(parts) == 1:
        return parts[0]
    joined = np.concatenate(parts, axis=-1)
    return joined / np.maximum(np.linalg.norm(joined, axis=-1, keepdims=True), 1e-12)


class DenseFungiTransformer(TransformerMixin, BaseEstimator):
    """Per-patch FUNGI features: each patch token with its own projected gradient.

    Every image is resized (whole) to ``input_size`` squared and its patch
    tokens ``u_t`` (L2-normalised) go through a random head (``latent_dim``).
    The positives of a token are the image's other tokens; its negatives are
    its ``n_negatives`` nearest patches of *other* images among the patches of
    the fitted images, of which ``negative_fraction`` (chosen per image, seeded)
    are indexed. The InfoNCE loss at temperature ``loss_temperature`` is
    back-propagated to the target layer, whose per-TOKEN gradient
    ``g_t [a_t; 1]^T`` is projected to ``projection_dim`` numbers and
    L2-normalised (``skfungi/dense/extractor.py`` derives it). The feature of a
    patch is ``normalise([u_t, normalise(P vec(g_t [a_t; 1]^T))])``.

    Parameters
    ----------
    backbone : ImageBackbone, timm model, str
        An image backbone: a timm model or spec (``"timm:vit_small_patch16_224"``),
        ``"skfungi:mobilenet_v2"``, or an :class:`~skfungi.backbones.ImageBackbone`
        (with ``tokens=`` for a module skfungi does not know).
    features : {"fungi", "embedding", "neighbors"} or tuple of str, default="fungi"
        ``"fungi"``: token and gradient. ``"embedding"``: the normalised token
        alone (no gradient, no support index). ``"neighbors"``: the token with
        the mean of its negatives' features, the no-gradient control of the
        same cost structure. A tuple of block names among ``"embedding"``,
        ``"gradient"``, ``"neighbors"`` concatenates those blocks.
    layer : str, default="auto"
        Target layer applied to every patch token (a ViT block's ``nn.Linear``
        or a 1x1 convolution at the token grid's resolution); ``"auto"``: the
        backbone's default (``blocks.<last>.attn.proj`` for ViTs,
        ``features.18.0`` for MobileNetV2).
    tokens : "auto" or callable, default="auto"
        ``tokens(module, inputs) -> (N, C, h, w)`` patch tokens. ``"auto"``
        knows timm ViTs and CNNs and ``"skfungi:mobilenet_v2"``.
    input_size : int or "auto", default="auto"
        Side of the square the images are resized to; ``"auto"`` is the
        backbone's input size. ViTs interpolate their position embeddings
        (the side must be a multiple of the patch size).
    latent_dim : int, default=96
    n_negatives : int, default=2
    negative_fraction : float, default=0.5
        Fraction of each fitted image's patches kept in the support index.
    loss_temperature : float, default=0.07
    projection : {"kronecker", "rademacher", "gaussian"} or projection object, default="kronecker"
        ``"kronecker"`` never forms a per-token gradient; ``"rademacher"`` is
        the paper's dense matrix (``k d_out (d_in + 1)`` multiply-adds per token).
    projection_dim : int or "auto", default="auto"
        ``"auto"``: the token width ``C``.
    algorithm : {"auto", "exact", "hnsw"}, default="auto"
        Search of the support index (``"auto"``: exact up to 10,000 patches).
    ef_construction : int, default=200
        hnswlib's build setting for a large support index: 64 builds about
        4x faster, with a slightly worse graph.
    batch_size : int, default=8
        Images per forward.
    device : "auto", str or torch.device, default="auto"
    random_state : int, RandomState instance or None, default=None
        Seeds the head, the kept support patches, the projection and hnswlib.

    Attributes
    ----------
    backbone_ : ImageBackbone
    device_ : torch.device
    layer_ : str or None
        Target layer (None without the gradient block).
    blocks_ : tuple of str
    input_size_ : int
    grid_shape_ : tuple of int
        ``(h, w)`` patch tokens per image.
    token_dim_ : int
    projection_ : projection object or None
    n_features_out_ : int
        Width of each patch's feature.
    seed_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from skfungi.dense import DenseFungiTransformer
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, num_classes=0)
    >>> images = np.random.default_rng(0).integers(0, 256, (4, 40, 40, 3), dtype=np.uint8)
    >>> dense = DenseFungiTransformer(vit, random_state=0).fit(images)
    >>> dense.transform(images).shape  # (images, h, w, token + gradient)
    (4, 4, 4, 32)
    """

    _parameter_constraints: ClassVar[dict] = {
        "backbone": [torch.nn.Module, Backbone, str],
        "features": [StrOptions(set(FEATURE_SETS)), tuple, list],
        "layer": [str],
        "tokens": [StrOptions({"auto"}), callable],
        "input_size": [StrOptions({"auto"}), int_range(1)],
        "latent_dim": [int_range(1)],
        "n_negatives": [int_range(1)],
        "negative_fraction": [real_range(0, 1, "right")],
        "loss_temperature": [real_range(0, None)],
        "projection": [StrOptions(set(PROJECTIONS)), HasMethods(["fit", "reduce", "project"])],
        "projection_dim": [StrOptions({"auto"}), int_range(1)],
        "algorithm": [StrOptions(set(ALGORITHMS))],
        "ef_construction": [int_range(1)],
        "batch_size": [int_range(1)],
        "device": [str, torch.device],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        backbone,
        *,
        features="fungi",
        layer="auto",
        tokens="auto",
        input_size="auto",
        latent_dim=96,
        n_negatives=2,
        negative_fraction=0.5,
        loss_temperature=0.07,
        projection="kronecker",
        projection_dim="auto",
        algorithm="auto",
        ef_construction=200,
        batch_size=8,
        device="auto",
        random_state=None,
    ):
        self.backbone = backbone
        self.features = features
        self.layer = layer
        self.tokens = tokens
        self.input_size = input_size
        self.latent_dim = latent_dim
        self.n_negatives = n_negatives
        self.negative_fraction = negative_fraction
        self.loss_temperature = loss_temperature
        self.projection = projection
        self.projection_dim = projection_dim
        self.algorithm = algorithm
        self.ef_construction = ef_construction
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state

    def __sklearn_clone__(self):
        return clone_sharing(self, ("backbone",))  # the backbone (possibly a large module) is never copied

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        return tags

    def fit(self, X, y=None):
        """Resolve the backbone, draw the head and projection, index the patches of ``X``.

        Parameters
        ----------
        X : images
            An ``(N, H, W, C)`` array, an ``(N, C, H, W)`` tensor, or a list of
            PIL images, file paths or arrays (sizes may differ): the support set
            whose patches are the negatives.
        y : ignored

        Returns
        -------
        self : DenseFungiTransformer
        """
        self._validate_params()
        blocks = self._blocks()
        backbone = copy.copy(resolve_backbone(self.backbone, "image", X))
        if not isinstance(backbone, ImageBackbone):
            raise TypeError(f"dense FUNGI needs an image backbone, got {backbone!r}.")
        check_module(backbone.module)  # NaN weights would give NaN scores and class 0 everywhere
        samples = backbone.as_samples(X, estimator=self, reset=True)
        self.device_ = resolve_device(self.device, backbone.module)
        self.backbone_ = backbone.to(self.device_)
        self.seed_ = base_seed(self.random_state)
        self.blocks_ = blocks
        self.input_size_ = self._input_size(self.backbone_)
        self.layer_ = target_layer(self.backbone_, self.layer) if "gradient" in blocks else None
        self.extractor_ = DenseExtractor(
            self.backbone_,
            token_function(self.backbone_, self.tokens),
            self.input_size_,
            blocks,
            self.seed_,
            layer_path=self.layer_,
            latent_dim=int(self.latent_dim),
            n_negatives=int(self.n_negatives),
            negative_fraction=float(self.negative_fraction),
            temperature=float(self.loss_temperature),
            algorithm=self.algorithm,
            ef_construction=int(self.ef_construction),
        )
        with frozen_eval(self.backbone_.module):
            self.extractor_.fit(samples, int(self.batch_size))
        self.grid_shape_ = self.extractor_.grid_shape
        self.token_dim_ = self.extractor_.token_dim
        self.projection_ = self._fit_projection(self.backbone_) if self.layer_ else None
        self.extractor_.projection = self.projection_
        widths = {"embedding": self.token_dim_, "neighbors": self.token_dim_}
        widths["gradient"] = self.projection_.n_components_ if self.projection_ is not None else 0
        self.n_features_out_ = sum(widths[name] for name in blocks)
        return self

    def transform(self, X) -> np.ndarray:
        """Patch features of ``X``: ``(N, h, w, n_features_out_)`` float32, each patch's row of unit norm."""
        return combine_blocks(self.transform_blocks(X), self.blocks_)

    def transform_blocks(self, X) -> dict[str, np.ndarray]:
        """Each block of ``X``'s patch features on its own: ``name -> (N, h, w, width)``, rows of unit norm."""
        check_is_fitted(self)
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self.blocks_}
        for _, _, blocks in self.iter_blocks(X):
            for name, block in blocks.items():
                parts[name].append(block)
        return {name: np.concatenate(chunks) for name, chunks in parts.items()}

    def iter_blocks(self, X):
        """Blocks of ``X``'s patch features, ``batch_size`` images at a time.

        Yields
        ------
        start, stop : int
            The images ``X[start:stop]`` of this batch.
        blocks : dict of str to ndarray
            ``name -> (stop - start, h, w, width)`` float32, each row of unit norm.
        """
        check_is_fitted(self)
        samples = self.backbone_.as_samples(X, estimator=self, reset=False)
        size = int(self.batch_size)
        with frozen_eval(self.backbone_.module):
            for start in range(0, len(samples), size):
                stop = min(start + size, len(samples))
                batch = [KeyedSample.of(self.backbone_, samples, i) for i in range(start, stop)]
                blocks = self.extractor_.batch_blocks(batch)
                yield start, stop, {name: self._on_grid(block) for name, block in blocks.items()}

    # -- internals ------------------------------------------------------------

    def _blocks(self) -> tuple[str, ...]:
        if isinstance(self.features, str):
            return FEATURE_SETS[self.features]
        blocks = tuple(self.features)
        unknown = [name for name in blocks if name not in BLOCKS]
        if not blocks or unknown or len(set(blocks)) != len(blocks):
            raise ValueError(
                f"features must be one of {sorted(FEATURE_SETS)} or a tuple of distinct block names among "
                f"{BLOCKS}; got {self.features!r}."
            )
        return blocks

    def _input_size(self, backbone: ImageBackbone) -> int:
        size = backbone.input_size if self.input_size == "auto" else int(self.input_size)
        patch = getattr(backbone, "patch_size", None) if isinstance(backbone, TimmBackbone) else None
        if patch is not None and size % patch:
            raise ValueError(f"input_size={size} is not a multiple of the ViT's patch size {patch}.")
        return size

    def _fit_projection(self, backbone: ImageBackbone):
        shape = layer_shape(resolve_layer(backbone.module, self.layer_))
        k = self.extractor_.token_dim if self.projection_dim == "auto" else int(self.projection_dim)
        return clone(make_projection(self.projection)).fit(shape.gradient_shape, k, self.seed_)

    def _on_grid(self, block: torch.Tensor) -> np.ndarray:
        return block.cpu().numpy().reshape(block.shape[0], *self.grid_shape_, block.shape[-1])
