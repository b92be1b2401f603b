"""Log-mel spectrogram frames: the default features function of the audio adapter."""

from __future__ import annotations

import numpy as np
import torch

from .._utils.sklearn_compat import validate_parameter_constraints
from .._utils.validation import int_range, real_range

__all__ = ["LogMelSpectrogram", "mel_filterbank"]


class LogMelSpectrogram:
    """``log(mel power spectrogram + floor)`` frames: Hann windows, HTK mel scale, triangular filters.

    Parameters
    ----------
    n_mels : int, default=128
        Mel bands (the width ``F`` of the frames).
    window_ms, hop_ms : float, default=25, 10
        Window length and hop in milliseconds (rounded to whole samples at
        each clip's rate; the FFT size is the window length).
    f_min : float, default=0
        Lowest band edge in Hz.
    f_max : float, optional
        Highest band edge in Hz; default: half the clip's sample rate. Set it
        when clips at different rates are mixed, so that bands mean the same
        frequencies for all of them.
    floor : float, default=1e-6
        Added before the logarithm (silence stays finite).

    Notes
    -----
    Frames are centred on multiples of the hop (the signal is zero-padded by
    half a window at both ends), so a clip of ``n`` samples gives
    ``1 + n // hop`` frames. Computed in float64.

    Examples
    --------
    >>> import torch
    >>> from skfungi.backbones.audio import LogMelSpectrogram
    >>> LogMelSpectrogram(n_mels=40)(torch.zeros(16000), 16000).shape
    torch.Size([101, 40])
    """

    def __init__(
        self,
        n_mels: int = 128,
        window_ms: float = 25.0,
        hop_ms: float = 10.0,
        f_min: float = 0.0,
        f_max: float | None = None,
        floor: float = 1e-6,
    ):
        positive = real_range(0, None, "neither")
        validate_parameter_constraints(
            {
                "n_mels": [int_range(1)],
                "window_ms": [positive],
                "hop_ms": [positive],
                "f_min": [real_range(0, None, "left")],
                "f_max": [None, positive],
                "floor": [positive],
            },
            {
                "n_mels": n_mels,
                "window_ms": window_ms,
                "hop_ms": hop_ms,
                "f_min": f_min,
                "f_max": f_max,
                "floor": floor,
            },
            caller_name=type(self).__name__,
        )
        if f_max is not None and f_max <= f_min:
            raise ValueError(f"f_max must be above f_min={f_min}, got {f_max!r}.")
        self.n_mels = int(n_mels)
        self.window_ms = float(window_ms)
        self.hop_ms = float(hop_ms)
        self.f_min = float(f_min)
        self.f_max = None if f_max is None else float(f_max)
        self.floor = float(floor)

    def __call__(self, waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
        window = max(2, round(sample_rate * self.window_ms / 1000))
        hop = max(1, round(sample_rate * self.hop_ms / 1000))
        f_max = sample_rate / 2 if self.f_max is None else self.f_max
        if f_max > sample_rate / 2:
            raise ValueError(f"f_max={f_max} Hz is above the Nyquist frequency of a {sample_rate} Hz clip.")
        spectrum = torch.stft(
            torch.as_tensor(waveform, dtype=torch.float64),
            n_fft=window,
            hop_length=hop,
            window=torch.hann_window(window, dtype=torch.float64),
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        power = spectrum.abs().square()  # (n_fft // 2 + 1, frames)
        filters = mel_filterbank(window, sample_rate, self.n_mels, self.f_min, f_max)
        return torch.log(filters @ power + self.floor).T.to(torch.float32).contiguous()

    def __repr__(self) -> str:
        return f"LogMelSpectrogram(n_mels={self.n_mels}, window_ms={self.window_ms}, hop_ms={self.hop_ms})"


def mel_filterbank(n_fft: int, sample_rate: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """``(n_mels, n_fft // 2 + 1)`` triangular HTK-mel filters of peak 1 (librosa's ``htk=True, norm=None``)."""

    def to_mel(hz):
        return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)

    edges = 700.0 * (10.0 ** (np.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2) / 2595.0) - 1.0)
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    widths = np.diff(edges)
    rising = (bins[None, :] - edges[:-2, None]) / widths[:-1, None]
    falling = (edges[2:, None] - bins[None, :]) / widths[1:, None]
    return torch.from_numpy(np.maximum(0.0, np.minimum(rising, falling)))


# -- Resemblyzer --------------------------------------------------------------------------------

_RESEMBLYZER_RATE = 16000
_PARTIAL_FRAMES = 160  # resemblyzer.hparams.partials_n_frames (1.6 s at 10 ms frames)
