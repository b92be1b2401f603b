"""The demo's data: a stratified sample of Fashion-MNIST (or scikit-learn's digits) as an ``.npz`` file.

``make demo`` and ``skfungi demo`` write it, then run ``skfungi evaluate`` on it
(``skfungi demo --data-only --output FOLDER`` writes it and prints its path):
``FOLDER/fashion-mnist.npz`` (arrays ``X``, uint8 images of 28 x 28, and ``y``,
the classes) or, when Debian's ``dataset-fashion-mnist`` is not installed,
``FOLDER/digits.npz`` (8 x 8 images), with a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

__all__ = ["DEMO_SAMPLES", "write_demo_data"]

logger = logging.getLogger(__name__)

#: 700 train + 300 test per split, and 256 held out for SimCLR's negative bank
DEMO_SAMPLES = 1256


def write_demo_data(folder, n_samples: int = DEMO_SAMPLES, random_state: int = 0, warn=None) -> Path:
    """Write ``n_samples`` stratified Fashion-MNIST training images (or digits) to an ``.npz`` in ``folder``.

    Parameters
    ----------
    folder : str or path
        Created if needed.
    n_samples : int, default=1256
    random_state : int, default=0
    warn : callable or None
        Receives the warning when the digits replace Fashion-MNIST (default: the ``skfungi`` logger).

    Returns
    -------
    path : Path
        ``folder/fashion-mnist.npz``, or ``folder/digits.npz`` without Fashion-MNIST. An existing file
        with the same content is left as it is (its modification time too).
    """
    from .. import datasets

    warn = warn or logger.warning
    try:
        images, labels, _, _ = datasets.load_fashion_mnist(n_samples, 10, random_state)
        name = "fashion-mnist"
    except FileNotFoundError as error:
        n_samples = min(n_samples, 1787)
        warn(f"WARNING: {error}")
        warn(f"WARNING: the demo falls back to scikit-learn's 8x8 digits ({n_samples} images).")
        images, labels, _, _ = datasets.load_digits_images(n_samples, 10, random_state)
        name = "digits"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            if np.array_equal(stored["X"], images) and np.array_equal(stored["y"], labels):
                return path
    temporary = folder / f".{name}.tmp.npz"
    np.savez(temporary, X=images, y=labels)
    temporary.replace(path)
    return path
