"""Image views: the inference view, DINO random crops and SimCLR patches.

Every function takes one image as a ``(C, H, W)`` float tensor in [0, 1] at
its own resolution and returns views of fixed size; normalisation for the
backbone happens later, in the backbone adapter.

Resampling is torchvision's (``torchvision.transforms.functional.resize``,
antialiased, in the model's interpolation: ``"bicubic"`` for most pretrained
ViTs), so a view holds the pixels that timm's or open_clip's own transforms
would give the model. Those transforms resample a PIL image in 8-bit PIL
arithmetic (rounded and clipped to 0-255 after each pass) and a tensor in
floating point; :func:`exact_8bit` lets the inference view do the same with
an image decoded from 8-bit data (every value a multiple of 1/255), so that
its embedding equals the library's evaluation to float precision. Deeper
data (16-bit, float) is resampled in floating point, never rounded to 8 bits.
The views of the losses are always resampled in floating point.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

__all__ = [
    "INTERPOLATIONS",
    "RESIZE_MODES",
    "center_view",
    "dino_crops",
    "dino_local_size",
    "dino_views",
    "exact_8bit",
    "patchify",
    "random_resized_crop",
    "resize",
    "simclr_patch_size",
    "simclr_views",
]

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
# "shortest": the shorter side is scaled (aspect kept), "squash": both sides are (timm's crop_mode="squash")
RESIZE_MODES = ("shortest", "squash")


def resize(image: torch.Tensor, size: int | tuple[int, int], interpolation: str = "bilinear") -> torch.Tensor:
    """Antialiased resize of one image (or a stack ``(..., C, H, W)``) to ``size`` (an int is a square side)."""
    height, width = (size, size) if isinstance(size, int) else size
    return TF.resize(image, [height, width], interpolation=InterpolationMode(interpolation), antialias=True)


def center_view(
    image,
    size: int,
    interpolation: str = "bilinear",
    crop_pct: float = 1.0,
    resize_mode: str = "shortest",
) -> torch.Tensor:
    """The inference view: resize to ``floor(size / crop_pct)``, then centre-crop a ``size`` square.

    This is timm's evaluation transform (``transforms_imagenet_eval``) and
    open_clip's (``crop_pct=1``): with ``resize_mode="shortest"`` the
    shorter side is resized (aspect kept), with ``"squash"`` both sides are.
    ``image`` is a ``(C, H, W)`` tensor or a PIL image (resampled by PIL, see
    :func:`exact_8bit`); the view is a float tensor.
    """
    scaled = math.floor(size / crop_pct)
    target = [scaled] if resize_mode == "shortest" else [scaled, scaled]
    resized = TF.resize(image, target, interpolation=InterpolationMode(interpolation), antialias=True)
    view = TF.center_crop(resized, [size, size])
    if isinstance(view, torch.Tensor):
        return view
    return TF.pil_to_tensor(view).to(torch.float32).div_(255.0)  # what ToTensor does with an 8-bit image


def exact_8bit(image: torch.Tensor):
    """The image as a PIL image when it holds 8-bit data exactly (every value ``k / 255``), else unchanged.

    A uint8 image decoded by skfungi (``k / 255`` in float32) is such an
    image; its PIL form is the one timm and open_clip are usually given.
    The test is on the values, not on the type they were decoded from: a
    16-bit image takes this path only when every value is a multiple of 257
    (a 16-bit file saved from an 8-bit picture, which then gives that
    picture's features exactly); any other deeper image is returned
    unchanged, so nothing finer than 1/255 is rounded away.
    """
    from PIL import Image

    codes = torch.round(image * 255.0)
    if not torch.equal(codes / 255.0, image):
        return image
    pixels = codes.to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels))


def random_resized_crop(
    image: torch.Tensor,
    size: int,
    scale: tuple[float, float],
    generator: torch.Generator,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """A crop covering a random ``scale`` fraction of the area, resized to ``size``.

    The sampling rule is torchvision's ``RandomResizedCrop`` (10 tries, then a
    centre crop with the aspect ratio clamped), drawn from ``generator``.
    """
    top, left, height, width = _crop_box(image.shape[-2], image.shape[-1], scale, ratio, generator)
    return resize(image[..., top : top + height, left : left + width], size, interpolation)


def _crop_box(height, width, scale, ratio, generator):
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        draws = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
        target_area = area * (scale[0] + (scale[1] - scale[0]) * draws[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * draws[1])
        crop_width = round(math.sqrt(target_area * aspect))
        crop_height = round(math.sqrt(target_area / aspect))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            top = int(torch.randint(0, height - crop_height + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - crop_width + 1, (1,), generator=generator))
            return top, left, crop_height, crop_width
    aspect = width / height
    if aspect < ratio[0]:
        crop_width, crop_height = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        crop_width, crop_height = round(height * ratio[1]), height
    else:
        crop_width, crop_height = width, height
    return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width


def dino_crops(
    image: torch.Tensor,
    size: int,
    n_global: int,
    n_local: int,
    global_scale: tuple[float, float],
    local_scale: tuple[float, float],
    generator: torch.Generator,
    local_size: int | None = None,
    interpolation: str = "bilinear",
) -> tuple[torch.Tensor, torch.Tensor]:
    """DINO's multi-crop: ``n_global`` large and ``n_local`` small random crops.

    Returns ``(global_views, local_views)`` of shapes ``(n_global, C, size, size)``
    and ``(n_local, C, s, s)`` with ``s = local_size or size`` (the paper resizes
    every crop to the full input size).
    """
    local_size = local_size or size
    crop = random_resized_crop
    global_views = [crop(image, size, global_scale, generator, interpolation=interpolation) for _ in range(n_global)]
    local_views = [crop(image, local_size, local_scale, generator, interpolation=interpolation) for _ in range(n_local)]
    channels = image.shape[0]
    return (
        torch.stack(global_views) if global_views else image.new_empty(0, channels, size, size),
        torch.stack(local_views) if local_views else image.new_empty(0, channels, local_size, local_size),
    )


def patchify(
    image: torch.Tensor,
    size: int,
    grid: int,
    patch_fraction: float = 0.5,
    output_size: int | None = None,
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """SimCLR's deterministic overlapping patches: ``grid * grid`` views.

    The image is resized to ``size`` (shorter side, then centre-cropped);
    patches of side ``round(size * patch_fraction)`` are cut with stride
    ``(size - side) // (grid - 1)`` and each resized to ``output_size``
    (default ``size``). At 224 px with the defaults this is the paper's
    kernel 112, stride 18, 7 x 7 = 49 patches.
    """
    side = round(size * patch_fraction)
    if not 0 < side <= size:
        raise ValueError(f"patch_fraction={patch_fraction} gives an empty or oversized patch at {size} px.")
    stride = (size - side) // (grid - 1) if grid > 1 else 1
    if grid > 1 and stride < 1:
        raise ValueError(f"a {grid} x {grid} grid of {side}-px patches does not fit in {size} px.")
    square = center_view(image, size, interpolation)
    patches = square.unfold(1, side, stride).unfold(2, side, stride)[:, :grid, :grid]
    # (C, grid, grid, side, side) -> (grid * grid, C, side, side), row-major over the grid
    patches = patches.permute(1, 2, 0, 3, 4).reshape(grid * grid, image.shape[0], side, side)
    output_size = output_size or size
    if side == output_size:
        return patches.contiguous()
    return resize(patches, output_size, interpolation)


# -- the view makers of the losses (skfungi.views.loss_views): a loss's settings, the adapter's geometry --


def dino_local_size(settings, backbone) -> int:
    """Side, in pixels, at which ``backbone`` forwards DINO's local crops: the input size (the paper),
    ``settings.local_crop_size`` pixels, or that fraction of the input size, then adjusted to what the
    backbone can forward (``backbone.forward_size``)."""
    image_size = backbone.input_size
    requested = settings.local_crop_size
    if requested is None:
        return image_size
    if isinstance(requested, float):
        requested = max(1, round(requested * image_size))
    return backbone.forward_size(int(requested))


def dino_views(image: torch.Tensor, settings, backbone, generator: torch.Generator, count=None) -> list:
    """DINO's global and local crops of one image, in one group when they share a side, else two."""
    image_size = backbone.input_size
    global_views, local_views = dino_crops(
        image,
        image_size,
        settings.n_global_crops,
        settings.n_local_crops,
        tuple(settings.global_crop_scale),
        tuple(settings.local_crop_scale),
        generator,
        local_size=dino_local_size(settings, backbone),
        interpolation=backbone.interpolation,
    )
    if local_views.shape[-1] == image_size:
        return [torch.cat([global_views, local_views])]
    return [group for group in (global_views, local_views) if len(group)]


def simclr_patch_size(settings, backbone) -> int:
    """Side, in pixels, at which ``backbone`` forwards SimCLR's patches: the input size when they are
    resized (the paper), else their own side adjusted to what the backbone can forward."""
    if settings.resize_patches:
        return backbone.input_size
    return backbone.forward_size(round(backbone.input_size * settings.patch_fraction))


def simclr_views(image: torch.Tensor, settings, backbone, generator: torch.Generator, count: int) -> list:
    """The first ``count`` of the overlapping patches (deterministic: ``generator`` is unused)."""
    size, grid, fraction = backbone.input_size, settings.grid_size, settings.patch_fraction
    side = simclr_patch_size(settings, backbone)
    return [patchify(image, size, grid, fraction, side, backbone.interpolation)[:count]]
