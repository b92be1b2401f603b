"""Seeds derived from ``random_state``, names and sample content.

Every random choice in skfungi (heads, projection, views, negatives) draws
from a generator whose seed is a hash of the estimator's base seed and a
description of *what* is drawn. A sample's views are keyed by its content, so
they never depend on the batch it sits in, its position, or the process.
"""

from __future__ import annotations

import hashlib
import numbers
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["base_seed", "content_key", "derive_seed", "generator"]

_SEED_BYTES = 8


def base_seed(random_state) -> int:
    """Turn a scikit-learn ``random_state`` into one non-negative integer.

    An int is used as is, so the same int always gives the same features; a
    ``RandomState`` or ``None`` draws one integer (the scikit-learn
    convention for those).
    """
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be non-negative, got {random_state}.")
        return int(random_state)
    if random_state is None:
        return int(np.random.mtrand._rand.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    raise ValueError(f"random_state must be None, an int or a numpy RandomState, got {random_state!r}.")


def _digest(*parts: bytes) -> int:
    hasher = hashlib.blake2b(digest_size=_SEED_BYTES)
    for part in parts:
        hasher.update(len(part).to_bytes(8, "little"))
        hasher.update(part)
    return int.from_bytes(hasher.digest(), "little") >> 1  # fits in int64


def derive_seed(seed: int, *names: str | int | bytes) -> int:
    """A 63-bit seed for the stream named ``names`` under base ``seed``."""
    parts = [int(seed).to_bytes(8, "little", signed=False)]
    for name in names:
        if isinstance(name, bytes):
            parts.append(name)
        else:
            parts.append(str(name).encode())
    return _digest(*parts)


def content_key(sample: torch.Tensor) -> bytes:
    """A digest of a sample's values, dtype and shape (its identity for seeding)."""
    array = sample.detach().cpu().contiguous().numpy()
    header = f"{array.dtype.str}{array.shape}".encode()
    return hashlib.blake2b(header + array.tobytes(), digest_size=16).digest()


def generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` (identical on every machine)."""
    import torch  # here, so that the torch-free parts of skfungi (neighbours, protocols) never import it

    return torch.Generator(device="cpu").manual_seed(seed)
