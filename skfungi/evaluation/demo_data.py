"""The demo's data: a stratified sample of Fashion-MNIST (or scikit-learn's digits) as an ``.npz`` file.

``make demo`` and ``skfungi demo`` write it, then run ``skfungi evaluate`` on it::

    python -m skfungi.evaluation.demo_data FOLDER [N_SAMPLES]

prints the path of the file written: ``FOLDER/fashion-mnist.npz`` (arrays
``X``, uint8 images of 28 x 28, and ``y``, the classes) or, when Debian's
``dataset-fashion-mnist`` is not installed, ``FOLDER/digits.npz`` (8 x 8
images) with a warning on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

__all__ = ["DEMO_SAMPLES", "write_demo_data"]

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
        Receives the warning when the digits replace Fashion-MNIST (default: print to stderr).

    Returns
    -------
    path : Path
        ``folder/fashion-mnist.npz``, or ``folder/digits.npz`` without Fashion-MNIST. An existing file
        with the same content is left as it is (its modification time too).
    """
    from .. import datasets

    warn = warn or (lambda message: print(message, file=sys.stderr))
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


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not 1 <= len(argv) <= 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    print(write_demo_data(argv[0], int(argv[1]) if len(argv) == 2 else DEMO_SAMPLES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
