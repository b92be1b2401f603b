"""A sample on its way through the engine: its canonical form, its index, and the key that seeds its views."""

from __future__ import annotations

__all__ = ["KeyedSample"]


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
