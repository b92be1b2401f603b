"""Defaults of the command's options, torch-free: the parser shows them, the commands apply them.

The options that fix the fit are None in the parser (so that ``--transformer``
can refuse them when given); a command reads the default from here. The
library's own defaults (views, layer, precision, the paper's losses) come from
:mod:`skfungi._defaults`, never written again here.
"""

from __future__ import annotations

from .. import _defaults

__all__ = [
    "BATCH_SIZE",
    "CHUNK_SIZE",
    "COMMAND_LOSSES",
    "FIT_SAMPLES",
    "LAYER",
    "LOSSES",
    "PRECISION",
    "SEED",
    "VIEWS",
    "paper_losses",
]

LOSSES = _defaults.LOSSES
VIEWS = _defaults.VIEWS
LAYER = _defaults.LAYER
PRECISION = _defaults.PRECISION
paper_losses = _defaults.paper_losses

SEED = 0  # the command's features are repeatable by default (the library's random_state is None)
FIT_SAMPLES = 64  # the reference implementation's bank size
BATCH_SIZE = 8
CHUNK_SIZE = 64
# the blocks --losses takes: the gradient blocks, and the no-gradient controls of the losses with several views
COMMAND_LOSSES = ("kl", "dino", "simclr", "dino_views", "simclr_views")
