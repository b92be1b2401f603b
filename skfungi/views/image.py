"""Image views: the inference view, DINO random crops and SimCLR patches.

Every function takes one image as a ``(C, H, W)`` float tensor in [0, 1] at
its own resolution and returns views of fixed size, still in [0, 1];
normalisation for the backbone happens later, in the backbone adapter.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["center_view", "dino_crops", "patchify", "random_resized_crop", "resize"]


def resize(image: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear (antialiased when shrinking) resize of one image to ``size``."""
    height, width = (size, size) if isinstance(size, int) else size
    if image.shape[-2:] == (height, width):
        return image
    shrinking = height < image.shape[-2] or width < image.shape[-1]
    resized = F.interpolate(
        image.unsqueeze(0), size=(height, width), mode="bilinear", align_corners=False, antialias=shrinking
    )
    return resized.squeeze(0)


def center_view(image: torch.Tensor, size: int) -> torch.Tensor:
    """The inference view: shorter side resized to ``size``, then centre-cropped square."""
    height, width = image.shape[-2:]
    scale = size / min(height, width)
    resized = resize(image, (max(size, round(height * scale)), max(size, round(width * scale))))
    top = (resized.shape[-2] - size) // 2
    left = (resized.shape[-1] - size) // 2
    return resized[..., top : top + size, left : left + size]


def random_resized_crop(
    image: torch.Tensor,
    size: int,
    scale: tuple[float, float],
    generator: torch.Generator,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """A crop covering a random ``scale`` fraction of the area, resized to ``size``.

    The sampling rule is torchvision's ``RandomResizedCrop`` (10 tries, then a
    centre crop with the aspect ratio clamped), drawn from ``generator``.
    """
    top, left, height, width = _crop_box(image.shape[-2], image.shape[-1], scale, ratio, generator)
    return resize(image[..., top : top + height, left : left + width], size)


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
) -> tuple[torch.Tensor, torch.Tensor]:
    """DINO's multi-crop: ``n_global`` large and ``n_local`` small random crops.

    Returns ``(global_views, local_views)`` of shapes ``(n_global, C, size, size)``
    and ``(n_local, C, s, s)`` with ``s = local_size or size`` (the paper resizes
    every crop to the full input size).
    """
    local_size = local_size or size
    global_views = [random_resized_crop(image, size, global_scale, generator) for _ in range(n_global)]
    local_views = [random_resized_crop(image, local_size, local_scale, generator) for _ in range(n_local)]
    channels = image.shape[0]
    return (
        torch.stack(global_views) if global_views else image.new_empty(0, channels, size, size),
        torch.stack(local_views) if local_views else image.new_empty(0, channels, local_size, local_size),
    )


def patchify(
    image: torch.Tensor, size: int, grid: int, patch_fraction: float = 0.5, output_size: int | None = None
) -> torch.Tensor:
    """SimCLR's deterministic overlapping patches: ``grid * grid`` views.

    The image is resized to ``size``; patches of side ``round(size * patch_fraction)``
    are cut with stride ``(size - side) // (grid - 1)`` and each resized to
    ``output_size`` (default ``size``). At 224 px with the defaults this is the
    paper's kernel 112, stride 18, 7 x 7 = 49 patches.
    """
    side = round(size * patch_fraction)
    if not 0 < side <= size:
        raise ValueError(f"patch_fraction={patch_fraction} gives an empty or oversized patch at {size} px.")
    stride = (size - side) // (grid - 1) if grid > 1 else 1
    if grid > 1 and stride < 1:
        raise ValueError(f"a {grid} x {grid} grid of {side}-px patches does not fit in {size} px.")
    square = center_view(image, size)
    patches = square.unfold(1, side, stride).unfold(2, side, stride)[:, :grid, :grid]
    # (C, grid, grid, side, side) -> (grid * grid, C, side, side), row-major over the grid
    patches = patches.permute(1, 2, 0, 3, 4).reshape(grid * grid, image.shape[0], side, side)
    output_size = output_size or size
    if side == output_size:
        return patches.contiguous()
    return F.interpolate(patches, size=(output_size, output_size), mode="bilinear", align_corners=False)
