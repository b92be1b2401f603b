"""A synthetic semantic-segmentation set built from offline data: small objects on natural textures.

Each scene is a crop of one of scikit-learn's two bundled photographs
(``load_sample_images``: a Chinese temple, a flower), resized to the scene's
side, with 2-4 grey objects (Fashion-MNIST items or scikit-learn's digits)
pasted at random positions and sizes, each tinted with a random colour (so
that colour says nothing about the class). The label map gives every pixel
the class of the object drawn on it last (object class + 1), or 0 for the
background: 11 classes. Scene ``i`` is drawn from its own seed, so the first
``n`` scenes of a larger set are the ``n`` scenes of a smaller one.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from .._utils.seeding import base_seed, derive_seed
from ..datasets import FASHION_MNIST_CLASSES
from ..views.image import resize

__all__ = ["SCENE_CLASSES", "make_segmentation_scenes"]

SCENE_CLASSES = ("background", *FASHION_MNIST_CLASSES)
# an object's pixels are those whose (resized) intensity exceeds this fraction of white
_OBJECT_THRESHOLD = 0.25


def make_segmentation_scenes(
    n_scenes: int,
    *,
    objects="fashion_mnist",
    split: str = "train",
    image_size: int = 224,
    n_objects: tuple[int, int] = (2, 4),
    object_size: tuple[float, float] = (0.25, 0.5),
    random_state=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scenes of objects pasted on natural-texture backgrounds, with their label maps.

    Parameters
    ----------
    n_scenes : int
    objects : {"fashion_mnist", "digits"} or (images, labels), default="fashion_mnist"
        Where the objects come from: Fashion-MNIST (Debian's
        ``dataset-fashion-mnist``, see :func:`skfungi.datasets.load_fashion_mnist`),
        scikit-learn's bundled 8x8 digits (no download), or your own grey
        ``(n, h, w)`` uint8 images with integer labels ``0 .. K-1``.
    split : {"train", "test"}, default="train"
        Which part of Fashion-MNIST (the official files) or of the digits (a
        fixed stratified split, 1000 / 797) the objects are drawn from, so
        that support and query scenes can hold different object instances.
        Ignored for your own arrays.
    image_size : int, default=224
        Side of the square scenes.
    n_objects : (int, int), default=(2, 4)
        Smallest and largest number of objects per scene (inclusive).
    object_size : (float, float), default=(0.25, 0.5)
        Range of an object's side as a fraction of the scene's.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    images : ndarray of shape (n_scenes, image_size, image_size, 3), uint8
    masks : ndarray of shape (n_scenes, image_size, image_size), uint8
        0 for background, ``label + 1`` for an object of class ``label``
        (names in :data:`SCENE_CLASSES` for Fashion-MNIST).

    Examples
    --------
    >>> from skfungi.dense import make_segmentation_scenes
    >>> images, masks = make_segmentation_scenes(3, objects="digits", image_size=64, random_state=0)
    >>> images.shape, masks.shape, int(masks.max()) <= 10
    ((3, 64, 64, 3), (3, 64, 64), True)
    """
    _check_settings(n_scenes, split, image_size, n_objects, object_size)
    pool, labels = _object_pool(objects, split)
    backgrounds = _backgrounds()
    seed = base_seed(random_state)
    images = np.empty((n_scenes, image_size, image_size, 3), dtype=np.uint8)
    masks = np.empty((n_scenes, image_size, image_size), dtype=np.uint8)
    for index in range(n_scenes):
        rng = np.random.default_rng(derive_seed(seed, "scene", split, index))
        image, mask = _scene(rng, pool, labels, backgrounds, image_size, n_objects, object_size)
        images[index] = np.round(image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        masks[index] = mask
    return images, masks


def _scene(rng, pool, labels, backgrounds, size, n_objects, object_size):
    photo = backgrounds[int(rng.integers(len(backgrounds)))]
    side = int(rng.uniform(0.3, 1.0) * min(photo.shape[-2:]))
    top = int(rng.integers(photo.shape[-2] - side + 1))
    left = int(rng.integers(photo.shape[-1] - side + 1))
    crop = photo[:, top : top + side, left : left + side]
    if rng.random() < 0.5:
        crop = crop.flip(-1)
    image = resize(crop, size).clone()
    mask = np.zeros((size, size), dtype=np.uint8)
    for _ in range(int(rng.integers(n_objects[0], n_objects[1] + 1))):
        choice = int(rng.integers(len(pool)))
        side = max(4, round(rng.uniform(*object_size) * size))
        item = resize(pool[choice][None], side)[0]
        top, left = (int(rng.integers(size - side + 1)) for _ in range(2))
        tint = torch.from_numpy(rng.uniform(0.5, 1.0, 3)).float()[:, None, None]
        region = item > _OBJECT_THRESHOLD
        window = image[:, top : top + side, left : left + side]
        painted = tint * (0.3 + 0.7 * item)
        window[:, region] = painted[:, region]
        mask[top : top + side, left : left + side][region.numpy()] = labels[choice] + 1
    return image.clamp_(0, 1), mask


def _object_pool(objects, split: str) -> tuple[torch.Tensor, np.ndarray]:
    """Grey objects as ``(n, h, w)`` floats in [0, 1] and their integer labels."""
    from ..datasets import load_digits_images, load_fashion_mnist

    if isinstance(objects, str):
        if objects == "fashion_mnist":
            X_train, y_train, X_test, y_test = load_fashion_mnist(n_train=60_000, n_test=10_000)
        elif objects == "digits":
            X_train, y_train, X_test, y_test = load_digits_images(1000, 797)
        else:
            raise ValueError(f"objects must be 'fashion_mnist', 'digits' or (images, labels); got {objects!r}.")
        images, labels = (X_train, y_train) if split == "train" else (X_test, y_test)
    else:
        try:
            images, labels = objects
        except (TypeError, ValueError):
            raise TypeError("objects must be 'fashion_mnist', 'digits' or a pair (images, labels).") from None
        images, labels = np.asarray(images), np.asarray(labels)
        if images.ndim != 3 or images.dtype != np.uint8 or labels.shape != (len(images),) or not len(images):
            raise ValueError(
                "objects=(images, labels) needs a non-empty (n, h, w) uint8 array and n integer labels; got "
                f"{images.shape} {images.dtype} and {labels.shape}."
            )
        if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() > 253:
            raise ValueError("object labels must be integers in 0..253 (the label map stores label + 1 as uint8).")
    return torch.from_numpy(np.ascontiguousarray(images)).float() / 255.0, labels.astype(np.int64)


def _backgrounds() -> list[torch.Tensor]:
    from sklearn.datasets import load_sample_images

    return [torch.from_numpy(np.array(photo)).permute(2, 0, 1).float() / 255.0 for photo in load_sample_images().images]


def _check_settings(n_scenes, split, image_size, n_objects, object_size) -> None:
    if not isinstance(n_scenes, numbers.Integral) or n_scenes < 0:
        raise ValueError(f"n_scenes must be a non-negative int, got {n_scenes!r}.")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    if not isinstance(image_size, numbers.Integral) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {image_size!r}.")
    low, high = n_objects
    if not (isinstance(low, numbers.Integral) and isinstance(high, numbers.Integral) and 0 <= low <= high):
        raise ValueError(f"n_objects must be (low, high) ints with 0 <= low <= high, got {n_objects!r}.")
    small, large = object_size
    if not 0 < small <= large <= 1:
        raise ValueError(f"object_size must be (small, large) with 0 < small <= large <= 1, got {object_size!r}.")
