"""Text views: random word deletion."""

from __future__ import annotations

import torch

__all__ = ["word_deletion"]


def word_deletion(text: str, drop_prob: float, generator: torch.Generator) -> str:
    """Drop each whitespace-separated word with probability ``drop_prob``.

    The kept words are joined by single spaces; a text whose every word is
    dropped becomes the empty string (encoded like any empty text).
    """
    words = text.split()
    if not words:
        return ""
    keep = torch.rand(len(words), generator=generator, dtype=torch.float64) >= drop_prob
    return " ".join(word for word, kept in zip(words, keep.tolist(), strict=True) if kept)
