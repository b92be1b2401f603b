"""A sequence whose items are decoded when they are read: inputs stay as the user gave them until used."""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["LazySequence"]


class LazySequence(Sequence):
    """``decode(items[index], index)`` on access (a slice gives a list).

    Nothing is decoded twice unless it is read twice, and memory holds one
    decoded item per reader at a time (files, PIL images, large arrays).

    Examples
    --------
    >>> from skfungi.inputs.lazy import LazySequence
    >>> squares = LazySequence([1, 2, 3], lambda item, index: item * item)
    >>> len(squares), squares[2], squares[:2]
    (3, 9, [1, 4])
    """

    def __init__(self, items, decode: Callable[[object, int], object]):
        self._items = items
        self._decode = decode

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self._decode(self._items[index], index)
