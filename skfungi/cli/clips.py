"""Audio clips of an input folder (``skfungi extract`` and ``skfungi evaluate``), read with soundfile.

Each clip is one sample, a ``(waveform, sample_rate)`` pair of float32 values: the channels of a
multi-channel file are averaged to mono, as the library's audio backbones take mono waveforms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import CommandError

__all__ = ["check_clips", "load_clips"]


def _soundfile():
    try:
        import soundfile
    except ImportError as error:  # the [audio] extra installs it
        raise CommandError(f"reading audio clips needs soundfile: pip install soundfile ({error}).") from error
    return soundfile


def load_clips(folder: Path, names: np.ndarray, indices) -> tuple[list, list[int], list[tuple[int, str]]]:
    """``(waveform, sample_rate)`` pairs, float32, the channels of a clip averaged to mono."""
    soundfile = _soundfile()
    samples, kept, failed = [], [], []
    for index in indices:
        try:
            waveform, rate = soundfile.read(folder / names[index], dtype="float32", always_2d=True)
            if waveform.shape[0] == 0:
                raise ValueError("the clip holds no samples")
            samples.append((np.ascontiguousarray(waveform.mean(axis=1)), int(rate)))
            kept.append(int(index))
        except (OSError, RuntimeError, TypeError, ValueError) as error:  # soundfile.LibsndfileError is a RuntimeError
            failed.append((int(index), f"{type(error).__name__}: {error}"))
    return samples, kept, failed


def check_clips(folder: Path, names: np.ndarray, progress) -> list[tuple[int, str]]:
    soundfile = _soundfile()
    failed = []
    for index, name in enumerate(names):
        try:
            info = soundfile.info(folder / name)  # reads the header only
            if info.frames == 0:
                failed.append((index, "ValueError: the clip holds no samples"))
        except (OSError, RuntimeError, TypeError, ValueError) as error:
            failed.append((index, f"{type(error).__name__}: {error}"))
        progress(1)
    return failed
