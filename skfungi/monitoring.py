"""Watching a feature extraction at work: its progress reports and its profiler labels.

Both are views of what :class:`~skfungi.FungiTransformer` already does, for
code of one's own that watches it (a progress bar, a benchmark, a profile):

- :func:`progress_listener` calls a function of yours as samples are
  finished: ``"fit"`` for each sample of a negative bank that ``fit``
  encodes, ``"transform"`` for each sample whose feature row ``transform``
  has computed. Summing the ``"transform"`` reports counts the rows a grid
  search or a cached pipeline extracts; the command line's progress bars
  are such a listener.
- :data:`PROFILER_LABELS` names the ``torch.profiler.record_function``
  ranges the extraction runs its stages under, so that a
  ``torch.profiler.profile`` trace of a ``transform`` attributes time to
  them (``prof.key_averages()`` has one row per label).

Importing this module imports torch.

Examples
--------
>>> from skfungi.monitoring import PROFILER_LABELS, progress_listener
>>> sorted(PROFILER_LABELS)
['backward', 'decode', 'forward', 'loss', 'project', 'views']
>>> rows = []
>>> with progress_listener(lambda stage, n_samples: rows.append((stage, n_samples))):
...     pass  # fit or transform here
"""

from __future__ import annotations

from types import MappingProxyType

from ._engine.extractor import LABELS
from ._utils.progress import progress_listener

__all__ = ["PROFILER_LABELS", "progress_listener"]

#: Stage -> its ``torch.profiler`` label: ``decode`` (samples to tensors), ``views``
#: (a loss's views built), ``forward`` (the backbone's forwards), ``loss`` (the loss
#: heads), ``backward`` (the backward pass and the per-sample gradient's reduction),
#: ``project`` (the projection of the reduced gradients). Read-only.
PROFILER_LABELS = MappingProxyType(dict(LABELS))
