"""Text views: random word deletion."""

from __future__ import annotations

import torch

__all__ = ["simclr_views", "word_deletion"]


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


def simclr_views(text: str, settings, backbone, generator: torch.Generator, count: int) -> list:
    """``count`` copies of the text with each word dropped with ``settings.drop_prob``."""
    return [[word_deletion(text, settings.drop_prob, generator) for _ in range(count)]]
