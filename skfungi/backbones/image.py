"""The image backbone adapter: any ``nn.Module`` that maps image batches to embeddings."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from ..inputs.columns import unwrap_column
from ..inputs.images import as_images
from ..views.image import INTERPOLATIONS, RESIZE_MODES, center_view, exact_8bit
from ._base import Backbone

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ImageBackbone"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageBackbone(Backbone):
    """Wrap any torch module that takes ``(N, C, H, W)`` image batches.

    Parameters
    ----------
    module : torch.nn.Module
        The frozen backbone. It is never modified: skfungi runs it in eval mode
        with frozen weights and restores its flags afterwards.
    layer : str, optional
        Dotted path of the default target layer (an ``nn.Linear`` or any
        ``nn.Conv2d`` / ``nn.Conv1d``). ``FungiTransformer(layer=...)`` overrides it.
    embed : callable, optional
        ``embed(module, inputs) -> (N, E)`` embedding. Default: ``module(inputs)``.
        Use a module-level function (not a lambda) if the fitted transformer
        is to be pickled.
    preprocess : callable, optional
        ``preprocess(views) -> inputs`` applied to a batch of ``(N, 3, S, S)``
        float views in [0, 1]. Default: normalise with ``mean`` and ``std``.
    input_size : int, default=224
        Side of the square views given to the backbone.
    mean, std : tuple of float
        Per-channel normalisation used by the default ``preprocess``.
    interpolation : {"bilinear", "bicubic", "nearest"}, default="bilinear"
        How every view is resampled (antialiased, as torchvision does).
    crop_pct : float, default=1.0
        The inference view resizes the image to ``floor(input_size / crop_pct)``
        and centre-crops ``input_size`` (timm's evaluation rule; 1.0 keeps the
        whole shorter side).
    resize_mode : {"shortest", "squash"}, default="shortest"
        Whether the inference view resizes the shorter side (aspect kept) or
        both sides.
    in_channels : int, default=3
        Channels the module expects; grey images are repeated to this count.
    flexible_size : bool, default=True
        Whether the module accepts square views of any side (CNNs with global
        pooling do). Cheaper view settings (``views="fast"``) forward some
        views at their own, smaller side; with ``False`` those views are
        resized to ``input_size`` instead (see :meth:`forward_size`).

    Notes
    -----
    An image decoded from 8-bit data (uint8 arrays, 8-bit PIL images and
    image files) gets its inference view resampled by PIL, in 8-bit
    arithmetic, as timm, open_clip and torchvision transforms resample the PIL
    images they are given; any other image (16-bit, float) is resampled in
    floating point by torchvision.
    The DINO crops and SimCLR patches use the same interpolation, in
    floating point.

    Examples
    --------
    >>> import torch.nn as nn
    >>> from skfungi.backbones import ImageBackbone
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    >>> backbone = ImageBackbone(net, layer="0", input_size=32)
    >>> backbone.default_layer
    '0'
    """

    modality = "image"

    def __init__(
        self,
        module: nn.Module,
        *,
        layer: str | None = None,
        embed: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
        preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
        input_size: int = 224,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
        in_channels: int = 3,
        flexible_size: bool = True,
        interpolation: str = "bilinear",
        crop_pct: float = 1.0,
        resize_mode: str = "shortest",
    ):
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}.")
        if int(input_size) < 1:
            raise ValueError(f"input_size must be a positive int, got {input_size!r}.")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}.")
        if not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct must lie in (0, 1], got {crop_pct!r}.")
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}.")
        self.module = module
        self.default_layer = layer
        self.embed_fn = embed
        self.preprocess_fn = preprocess
        self.input_size = int(input_size)
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.in_channels = int(in_channels)
        self.flexible_size = bool(flexible_size)
        self.interpolation = interpolation
        self.crop_pct = float(crop_pct)
        self.resize_mode = resize_mode

    def as_samples(self, X, estimator=None, reset: bool = True) -> Sequence[torch.Tensor]:
        """Images as ``(C, H, W)`` float tensors in [0, 1], decoded on access (see ``as_images``).

        Column forms (a Series, a one-column DataFrame, an object array of
        shape ``(n, 1)`` or ``(n,)``) are unwrapped first (see ``skfungi.inputs.columns``).
        """
        return as_images(unwrap_column(X, "image", estimator, reset))

    def inference_view(self, image: torch.Tensor) -> torch.Tensor:
        """Resized to ``floor(input_size / crop_pct)`` (see ``resize_mode``), centre-cropped to ``input_size``."""
        return center_view(exact_8bit(image), self.input_size, self.interpolation, self.crop_pct, self.resize_mode)

    def forward_size(self, size: int) -> int:
        """Side at which a view that a loss asks for at ``size`` pixels is forwarded.

        ``size`` itself when the module accepts any size (``flexible_size``),
        otherwise ``input_size`` (the view is resized up or down to it).
        """
        return int(size) if self.flexible_size else self.input_size

    def embed(self, views) -> torch.Tensor:
        """Embeddings of a list (or stacked tensor) of ``(C, S, S)`` views."""
        batch = torch.stack(list(views)) if not isinstance(views, torch.Tensor) else views
        return self.embed_inputs(self.prepare(batch))

    def canonical(self, image: torch.Tensor, index: int) -> torch.Tensor:
        """One decoded ``(C, H, W)`` image with the channels the module expects.

        Grey images are repeated to ``in_channels``; any other mismatch is an
        error naming the sample.
        """
        channels = image.shape[0]
        if channels == self.in_channels:
            return image
        if channels == 1:
            return image.expand(self.in_channels, -1, -1)
        raise ValueError(f"sample {index} has {channels} channels; the backbone expects {self.in_channels}.")

    def prepare(self, views: torch.Tensor) -> torch.Tensor:
        """Turn ``(N, C, S, S)`` views in [0, 1] into the module's input."""
        views = views.to(device=self.device, dtype=self.dtype)
        if self.preprocess_fn is not None:
            return self.preprocess_fn(views)
        mean = torch.tensor(self.mean, device=views.device, dtype=views.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=views.device, dtype=views.dtype).view(1, -1, 1, 1)
        return (views - mean) / std

    def embed_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(N, E)`` embeddings of prepared inputs (autograd enabled by the caller)."""
        try:
            output = self.embed_fn(self.module, inputs) if self.embed_fn is not None else self.module(inputs)
        except (RuntimeError, AssertionError, ValueError) as error:
            if inputs.shape[-1] == self.input_size:
                raise
            raise RuntimeError(
                f"the backbone failed on {inputs.shape[-1]}-px views (its input size is {self.input_size}). "
                f"If it only accepts {self.input_size}-px inputs, give it as "
                f"ImageBackbone(..., flexible_size=False), or use views='paper'."
            ) from error
        return self._check_embedding(output, inputs.shape[0])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({type(self.module).__name__}, input_size={self.input_size}, "
            f"interpolation={self.interpolation!r}, crop_pct={self.crop_pct})"
        )
