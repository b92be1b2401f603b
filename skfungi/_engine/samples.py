"""Samples on their way through the engine: keyed (canonical form, index, the key that seeds its views),
decoded batch by batch, and their views gathered into forwards."""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor

import torch
from torch.profiler import record_function

__all__ = ["KeyedSample", "concat_groups", "decoded_batches", "stack_views"]

DECODE_LABEL = "skfungi.decode"  # the profiler label of decoding (skfungi._engine.extractor.LABELS["decode"])


class KeyedSample:
    """A canonical sample, its index in its collection, and the key that seeds its views.

    The key is a digest of the *raw* sample, as the input collection yields
    it, never of anything computed from it (such as audio feature frames):
    floating-point kernels may round differently with the thread count or the
    machine, and a key that moved by one bit would draw other views. It is
    computed on first use (only blocks with views need it).
    """

    __slots__ = ("_backbone", "_key", "_raw", "index", "sample")

    def __init__(self, sample, raw, backbone, index: int = 0):
        self.sample = sample
        self.index = index
        self._raw = raw
        self._backbone = backbone
        self._key = None

    @classmethod
    def of(cls, backbone, samples, index: int) -> KeyedSample:
        """The sample at ``index`` of a collection (reading it may decode a file)."""
        return cls.from_raw(samples[index], index, backbone)

    @classmethod
    def from_raw(cls, raw, index: int, backbone) -> KeyedSample:
        return cls(backbone.canonical(raw, index), raw, backbone, index)

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = self._backbone.sample_key(self._raw)
            self._raw = None
        return self._key


def decoded_batches(backbone, samples, batch_size: int, num_workers: int = 0):
    """``(start, stop, keyed samples)`` per batch of ``batch_size``; ``num_workers`` threads decode ahead.

    Decoding (files, PIL, resizing) then runs in threads while the backbone
    computes; at most two batches are decoded ahead, so memory stays bounded
    whatever the number of samples.
    """
    n_samples = len(samples)
    ranges = [(start, min(start + batch_size, n_samples)) for start in range(0, n_samples, batch_size)]
    if not num_workers:
        for start, stop in ranges:
            with record_function(DECODE_LABEL):
                batch = [KeyedSample.of(backbone, samples, i) for i in range(start, stop)]
            yield start, stop, batch
        return
    with ThreadPoolExecutor(num_workers, thread_name_prefix="skfungi-decode") as pool:
        pending, submitted = deque(), 0
        for start, stop in ranges:
            while submitted < min(n_samples, stop + 2 * batch_size):
                pending.append(pool.submit(KeyedSample.of, backbone, samples, submitted))
                submitted += 1
            yield start, stop, [pending.popleft().result() for _ in range(stop - start)]


def concat_groups(groups):
    """One view group over samples: a tensor when the views stack, else a flat list of views."""
    if all(isinstance(group, torch.Tensor) for group in groups) and len({group.shape[1:] for group in groups}) == 1:
        return torch.cat(list(groups))
    return [view for group in groups for view in group]


def stack_views(views):
    """Views of one group as one tensor when they stack, else as a list."""
    if all(isinstance(view, torch.Tensor) for view in views) and len({view.shape for view in views}) == 1:
        return torch.stack(list(views))
    return list(views)
