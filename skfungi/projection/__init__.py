"""Seeded random projections of per-sample gradients.

Dense projections (:class:`RademacherProjection`, :class:`GaussianProjection`)
multiply the flattened ``d_out x (d_in + 1)`` gradient by a ``(k, D)`` random
matrix scaled by ``1/sqrt(k)``. The matrix is never stored: it is defined
tile by tile (each at most ``TILE_BYTES``, drawn from a generator seeded by
the base seed and the tile's index) and regenerated at every projection, so
the extra memory stays about ``TILE_BYTES`` whatever the layer (a CPU draws its
float64 tiles in blocks of rows), and the result does not depend on the batch or
the device.

:class:`SRHTProjection` (subsampled randomised Hadamard transform) has rows
that are, like the dense ones, uniformly random sign vectors over all ``D``
coordinates, but applies them in ``O(D log k)`` instead of ``O(D k)``
operations per sample (see its docstring).

:class:`KroneckerProjection` uses ``P = P_out (x) P_in``, so that
``P vec(g a^T) = vec((P_out g)(P_in a)^T)``: the gradient is never formed.

A projection is fitted by :class:`~skfungi.FungiTransformer` with the target
layer's gradient shape, the output width and a seed, and is then used in two
steps: :meth:`reduce` turns per-sample factors ``(g, a)`` into a compact
per-sample array, and :meth:`project` maps stacked reductions (of several
losses at once, which amortises the regeneration) to ``(n, k)``.
"""

from __future__ import annotations

from ._base import FlatGradientProjection
from .dense import GaussianProjection, RademacherProjection
from .kronecker import KroneckerProjection
from .srht import SRHTProjection

__all__ = [
    "PROJECTIONS",
    "FlatGradientProjection",
    "GaussianProjection",
    "KroneckerProjection",
    "RademacherProjection",
    "SRHTProjection",
    "make_projection",
]

PROJECTIONS = {
    "rademacher": RademacherProjection,
    "gaussian": GaussianProjection,
    "kronecker": KroneckerProjection,
    "srht": SRHTProjection,
}


def make_projection(projection):
    """A projection object from a name or an object with ``fit`` / ``reduce`` / ``project``."""
    if isinstance(projection, str):
        if projection.lower() not in PROJECTIONS:
            raise ValueError(f"unknown projection {projection!r}; use one of {sorted(PROJECTIONS)}.")
        return PROJECTIONS[projection.lower()]()
    if all(hasattr(projection, name) for name in ("fit", "reduce", "project")):
        return projection
    raise TypeError(
        "projection must be 'rademacher', 'gaussian', 'kronecker', 'srht' or an object with "
        f"fit, reduce and project methods; got {type(projection).__name__}."
    )
