"""Audio backbone adapters: waveforms -> feature frames -> any ``nn.Module`` (LSTMs included).

A clip's canonical form is its ``(frames, features)`` tensor, computed once
from the waveform by a features function; views (SimCLR's noise + time roll)
are built on those frames, and a clip's views are seeded by a hash of its
waveform (never of the frames: an FFT may round differently with the number
of threads, and a key one bit off would draw other views).

Clips of different lengths give frame tensors of different lengths. The
module gets one ``(N, T, F)`` tensor when every view in the call has the same
length, and otherwise a ``torch.nn.utils.rnn.PackedSequence`` (in input order,
``enforce_sorted=False``), which ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` consume
exactly as if each clip ran alone. So a sample's features never depend on
which other clips share its batch, and the target layer is called once per
forward with the views in order (which per-sample gradients need). Nothing is
padded behind the module's back.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import PackedSequence, pack_sequence, pad_packed_sequence

from .._core.seeding import content_key
from ..inputs.audio import Waveform, as_waveforms, check_sample_rate
from ..inputs.columns import unwrap_column
from ..views.audio import noise_and_roll
from ._base import Backbone, last_linear

__all__ = [
    "AudioBackbone",
    "LogMelSpectrogram",
    "PartialUtteranceEmbedding",
    "ResemblyzerBackbone",
    "ResemblyzerFeatures",
    "batch_frames",
    "last_linear",
    "resemblyzer_backbone",
]

FeaturesFunction = Callable[[torch.Tensor, int], "torch.Tensor | np.ndarray"]
EmbedFunction = Callable[[nn.Module, "torch.Tensor | PackedSequence"], torch.Tensor]


def batch_frames(batch: torch.Tensor | PackedSequence) -> list[torch.Tensor]:
    """The ``(T_i, F)`` frame tensors of a batch given to a module, in input order.

    ``batch`` is what :class:`AudioBackbone` hands to ``embed``: an
    ``(N, T, F)`` tensor or a ``PackedSequence``. Useful in ``embed``
    functions of modules that do not take packed sequences.

    Examples
    --------
    >>> import torch
    >>> from torch.nn.utils.rnn import pack_sequence
    >>> from skfungi.backbones.audio import batch_frames
    >>> packed = pack_sequence([torch.ones(3, 2), torch.zeros(5, 2)], enforce_sorted=False)
    >>> [tuple(frames.shape) for frames in batch_frames(packed)]
    [(3, 2), (5, 2)]
    """
    if isinstance(batch, PackedSequence):
        padded, lengths = pad_packed_sequence(batch, batch_first=True)
        return [padded[index, :length] for index, length in enumerate(lengths.tolist())]
    return list(batch.unbind(0))


class AudioBackbone(Backbone):
    """Wrap any torch module that embeds batches of feature frames ``(N, T, F)``.

    Parameters
    ----------
    module : torch.nn.Module
        The frozen backbone, e.g. an ``nn.LSTM`` followed by an ``nn.Linear``.
        It is never modified: skfungi runs it in eval mode with frozen weights
        and restores its flags afterwards. When the views of one call have
        different lengths it receives a ``PackedSequence`` (see ``embed``).
    features : callable, optional
        ``features(waveform, sample_rate) -> (frames, F)`` tensor or array,
        with ``waveform`` a 1-D float32 CPU tensor. It runs once per clip; its
        frames are the clip's canonical form (views are built on them; they
        are stored as float32). Default: ``LogMelSpectrogram()`` (128 log-mel
        bands, 25 ms windows, 10 ms hop). Use a module-level function or a
        callable object (not a lambda) if the fitted transformer is to be
        pickled.
    sample_rate : int, default=16000
        Sample rate (Hz) of waveforms given without one; a clip given as a
        ``(waveform, sample_rate)`` pair carries its own. The adapter never
        resamples: the features function receives each clip's rate.
    layer : str, optional
        Dotted path of the default target layer. Default: the last
        ``nn.Linear`` registered in ``module`` (for an LSTM encoder, its final
        projection). ``FungiTransformer(layer=...)`` overrides it.
    embed : callable, optional
        ``embed(module, batch) -> (N, E)`` embedding, where ``batch`` is an
        ``(N, T, F)`` tensor when all views have the same length and a
        ``PackedSequence`` (``enforce_sorted=False``, input order) otherwise;
        :func:`batch_frames` turns either into a list of ``(T_i, F)`` tensors.
        Default: ``module(batch)``. It must keep each view's embedding a
        function of that view alone (no padding statistics shared across
        the batch). Use a module-level function if pickling.

    Examples
    --------
    >>> import numpy as np, torch, torch.nn as nn
    >>> from skfungi import FungiTransformer
    >>> from skfungi.backbones.audio import AudioBackbone, LogMelSpectrogram
    >>> class Speaker(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.lstm = nn.LSTM(16, 12, batch_first=True)
    ...         self.linear = nn.Linear(12, 6)
    ...     def forward(self, frames):
    ...         _, (hidden, _) = self.lstm(frames)  # frames: tensor or PackedSequence
    ...         return self.linear(hidden[-1])
    >>> backbone = AudioBackbone(Speaker(), features=LogMelSpectrogram(n_mels=16), sample_rate=8000)
    >>> backbone.default_layer
    'linear'
    >>> rng = np.random.default_rng(0)
    >>> clips = [rng.uniform(-0.5, 0.5, n).astype(np.float32) for n in (800, 1200, 960, 1600)]
    >>> fungi = FungiTransformer(backbone, losses=("kl", "simclr"), random_state=0)
    >>> fungi.fit_transform(clips).shape
    (4, 18)
    """

    modality = "audio"

    def __init__(
        self,
        module: nn.Module,
        *,
        features: FeaturesFunction | None = None,
        sample_rate: int = 16000,
        layer: str | None = None,
        embed: EmbedFunction | None = None,
    ):
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}.")
        if features is not None and not callable(features):
            raise TypeError(f"features must be a callable (waveform, sample_rate) -> frames, got {features!r}.")
        if embed is not None and not callable(embed):
            raise TypeError(f"embed must be a callable (module, batch) -> (N, E), got {embed!r}.")
        if layer is not None and not isinstance(layer, str):
            raise TypeError(f"layer must be a dotted path string or None, got {layer!r}.")
        self.module = module
        self.features_fn = features if features is not None else LogMelSpectrogram()
        self.sample_rate = check_sample_rate(sample_rate)
        self.default_layer = layer if layer is not None else last_linear(module)
        self.embed_fn = embed

    def as_samples(self, X, estimator=None, reset: bool = True) -> Sequence[Waveform]:
        """Validated clips (see ``skfungi.inputs.audio``): ``(waveform, sample_rate)`` on access.

        Column forms (a Series, a one-column DataFrame, an object array of
        shape ``(n, 1)`` or ``(n,)``) are unwrapped first (see ``skfungi.inputs.columns``).
        """
        return as_waveforms(unwrap_column(X, "audio", estimator, reset), self.sample_rate)

    def canonical(self, sample: Waveform, index: int) -> torch.Tensor:
        """The clip's ``(frames, F)`` float32 feature frames; errors name the sample."""
        waveform, rate = sample
        try:
            frames = self.features_fn(waveform, rate)
        except Exception as error:
            raise ValueError(
                f"the features function failed on sample {index} ({waveform.shape[0]} samples at {rate} Hz): {error}"
            ) from error
        return _checked_frames(frames, index, waveform.shape[0], rate)

    def sample_key(self, sample: Waveform) -> bytes:
        """Digest of the clip's waveform and sample rate (not of its frames, which are computed with
        floating-point kernels whose rounding may depend on the thread count)."""
        waveform, rate = sample
        return content_key(waveform) + rate.to_bytes(8, "little")

    def inference_view(self, frames: torch.Tensor) -> torch.Tensor:
        """The clip's own frames."""
        return frames

    def simclr_views(self, frames: torch.Tensor, loss, generator: torch.Generator, count: int) -> list:
        """``count`` copies of the frames with uniform noise of ``loss.noise_scale``, each rolled by up to
        ``loss.max_roll`` frames."""
        return [torch.stack([noise_and_roll(frames, generator, loss.noise_scale, loss.max_roll) for _ in range(count)])]

    def encode(self, views) -> torch.Tensor:
        """``(N, E)`` embeddings of ``(T_i, F)`` frame views (a list, or an ``(N, T, F)`` tensor)."""
        batch, packed = self.prepare(views)
        n_views = batch.batch_sizes[0].item() if packed else batch.shape[0]
        try:
            output = self.embed_fn(self.module, batch) if self.embed_fn is not None else self.module(batch)
        except (TypeError, AttributeError, IndexError, RuntimeError, ValueError) as error:
            if not packed:
                raise
            raise TypeError(
                f"{type(self.module).__name__} failed on a PackedSequence ({error}). Views of different lengths "
                "reach the module packed; give AudioBackbone an embed function that handles PackedSequence "
                "(see skfungi.backbones.audio.batch_frames), or make the features function return a fixed "
                "number of frames."
            ) from error
        return self._check_embedding(output, n_views)

    def prepare(self, views) -> tuple[torch.Tensor | PackedSequence, bool]:
        """Views on the module's device and dtype: a stacked tensor, or a PackedSequence when lengths differ."""
        if isinstance(views, torch.Tensor):
            if views.ndim != 3:
                raise ValueError(f"a stacked batch of views must be (N, T, F), got shape {tuple(views.shape)}.")
            return views.to(device=self.device, dtype=self.dtype), False
        views = [view.to(device=self.device, dtype=self.dtype) for view in views]
        widths = {view.shape[-1] for view in views}
        if len(widths) > 1:
            raise ValueError(f"feature frames must all have the same width; got widths {sorted(widths)}.")
        if len({view.shape[0] for view in views}) == 1:
            return torch.stack(views), False
        return pack_sequence(views, enforce_sorted=False), True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.module).__name__}, sample_rate={self.sample_rate})"


def _checked_frames(frames, index: int, n_samples: int, rate: int) -> torch.Tensor:
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if not isinstance(frames, torch.Tensor):
        raise TypeError(
            f"the features function returned a {type(frames).__name__} for sample {index}; "
            "expected a (frames, features) tensor or array."
        )
    if frames.ndim != 2:
        raise ValueError(
            f"the features of sample {index} have shape {tuple(frames.shape)}; expected (frames, features)."
        )
    if frames.shape[0] == 0 or frames.shape[1] == 0:
        raise ValueError(
            f"the features of sample {index} have shape {tuple(frames.shape)}: no frames from a clip of "
            f"{n_samples} samples at {rate} Hz (too short for the features function?)."
        )
    if not frames.is_floating_point():
        raise TypeError(f"the features of sample {index} have dtype {frames.dtype}; expected floats.")
    frames = frames.detach().to(device="cpu", dtype=torch.float32).contiguous()
    if not bool(torch.isfinite(frames).all()):
        raise ValueError(f"the features of sample {index} contain NaN or infinite values.")
    return frames


# -- a default features function --------------------------------------------------------------


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
        if not isinstance(n_mels, numbers.Integral) or isinstance(n_mels, bool) or n_mels < 1:
            raise ValueError(f"n_mels must be a positive int, got {n_mels!r}.")
        for name, value in (("window_ms", window_ms), ("hop_ms", hop_ms), ("floor", floor)):
            if not isinstance(value, numbers.Real) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}.")
        if not isinstance(f_min, numbers.Real) or f_min < 0:
            raise ValueError(f"f_min must be a non-negative number, got {f_min!r}.")
        if f_max is not None and (not isinstance(f_max, numbers.Real) or f_max <= f_min):
            raise ValueError(f"f_max must be None or a number above f_min={f_min}, got {f_max!r}.")
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


def _import_resemblyzer():
    try:
        import resemblyzer
    except ImportError as error:
        raise ImportError(
            "the Resemblyzer adapter needs the resemblyzer package: "
            "pip install 'setuptools<81' resemblyzer (webrtcvad builds from source and needs pkg_resources)."
        ) from error
    return resemblyzer


class ResemblyzerFeatures:
    """Resemblyzer's mel frames of one clip, as its ``embed_utterance`` computes them.

    1. ``preprocess=True`` (default): ``resemblyzer.preprocess_wav``, i.e.
       resample to 16 kHz, raise the volume to -30 dBFS (never lowers it),
       and shorten silences longer than ~0.2 s with webrtcvad; this is the
       input the pretrained encoder expects. ``preprocess=False``: only
       resample to 16 kHz (``librosa.resample``, as ``preprocess_wav`` does).
    2. ``partials=True``: zero-pad the clip as ``embed_utterance`` does so that
       its last 1.6 s partial window is complete (at least one window, so
       clips under 1.6 s are padded to 1.6 s), and keep only the frames the
       partial windows cover.
    3. ``resemblyzer.audio.wav_to_mel_spectrogram``: 40 mel bands (power, not
       log), 25 ms windows, 10 ms hop.

    Parameters
    ----------
    preprocess : bool, default=True
    partials : bool, default=True
        Frames for :class:`PartialUtteranceEmbedding` (True) or for a
        forward on the whole utterance (False).
    rate : float, default=1.3
        Partial windows per second (``embed_utterance``'s ``rate``).
    min_coverage : float, default=0.75
        ``embed_utterance``'s ``min_coverage`` for the last partial window.
    """

    def __init__(self, preprocess: bool = True, partials: bool = True, rate: float = 1.3, min_coverage: float = 0.75):
        self.preprocess = bool(preprocess)
        self.partials = bool(partials)
        self.rate = float(rate)
        self.min_coverage = float(min_coverage)

    def __call__(self, waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
        resemblyzer = _import_resemblyzer()
        wav = waveform.detach().cpu().numpy()
        if not np.any(wav):
            raise ValueError("the clip is silent (all zeros); Resemblyzer's volume normalisation is undefined for it.")
        source_rate = sample_rate if sample_rate != _RESEMBLYZER_RATE else None
        if self.preprocess:
            wav = resemblyzer.preprocess_wav(wav, source_sr=source_rate)
            if len(wav) == 0:
                raise ValueError("no voiced audio is left after Resemblyzer's silence trimming (preprocess=True).")
        elif source_rate is not None:
            import librosa

            wav = librosa.resample(wav, orig_sr=source_rate, target_sr=_RESEMBLYZER_RATE)
        stop = None
        if self.partials:
            wav_slices, mel_slices = resemblyzer.VoiceEncoder.compute_partial_slices(
                len(wav), self.rate, self.min_coverage
            )
            if wav_slices[-1].stop >= len(wav):
                wav = np.pad(wav, (0, wav_slices[-1].stop - len(wav)), "constant")
            stop = mel_slices[-1].stop
        mel = resemblyzer.audio.wav_to_mel_spectrogram(wav)
        return torch.from_numpy(np.ascontiguousarray(mel[:stop]))

    def __repr__(self) -> str:
        return f"ResemblyzerFeatures(preprocess={self.preprocess}, partials={self.partials})"


class PartialUtteranceEmbedding:
    """Resemblyzer's ``embed_utterance``, batched and differentiable with respect to ``linear``.

    Each view's frames are cut into windows of ``partial_frames`` frames every
    ``step`` frames (the last window ends on the last frame, which
    :class:`ResemblyzerFeatures` with ``partials=True`` guarantees; views
    shorter than one window are zero-padded to one). Every window goes through
    ``module.lstm`` (the last layer's final hidden state), then
    ``normalise(relu(module.linear(.)))``; the view's embedding is the
    L2-normalised mean over its windows. ``module.linear`` is called once,
    with windows as tokens (zero-padded per view, and masked out of the mean,
    so padding contributes exactly nothing): a view's embedding and gradient
    depend on its own frames only.

    Parameters
    ----------
    partial_frames : int, default=160
    step : int, default=77
        Frames between window starts (``round(16000 / 1.3 / 160)``, the
        library's default ``rate=1.3``).
    """

    def __init__(self, partial_frames: int = _PARTIAL_FRAMES, step: int = 77):
        self.partial_frames = int(partial_frames)
        self.step = int(step)

    def __call__(self, module: nn.Module, batch: torch.Tensor | PackedSequence) -> torch.Tensor:
        views = batch_frames(batch)
        windows, owners, slots = [], [], []
        for view_index, frames in enumerate(views):
            if frames.shape[0] < self.partial_frames:
                frames = F.pad(frames, (0, 0, 0, self.partial_frames - frames.shape[0]))
            starts = range(0, frames.shape[0] - self.partial_frames + 1, self.step)
            for slot, start in enumerate(starts):
                windows.append(frames[start : start + self.partial_frames])
                owners.append(view_index)
                slots.append(slot)
        _, (hidden, _) = module.lstm(torch.stack(windows))
        hidden = hidden[-1]  # (total windows, H)
        owners_t = torch.tensor(owners, device=hidden.device)
        slots_t = torch.tensor(slots, device=hidden.device)
        tokens = hidden.new_zeros(len(views), max(slots) + 1, hidden.shape[-1])
        tokens[owners_t, slots_t] = hidden
        mask = hidden.new_zeros(len(views), tokens.shape[1])
        mask[owners_t, slots_t] = 1.0
        partial = F.normalize(module.relu(module.linear(tokens)), dim=-1)
        mean = (partial * mask.unsqueeze(-1)).sum(dim=1) / mask.sum(dim=1, keepdim=True)
        return F.normalize(mean, dim=-1)

    def __repr__(self) -> str:
        return f"PartialUtteranceEmbedding(partial_frames={self.partial_frames}, step={self.step})"


_EMBEDDINGS = ("partials", "utterance")


class ResemblyzerBackbone(AudioBackbone):
    """The Resemblyzer speaker encoder (3-layer LSTM + ``linear`` 256, ReLU, L2-normalised).

    Inputs are mono float waveforms at ``sample_rate`` (or
    ``(waveform, sample_rate)`` pairs); other rates than 16 kHz, such as
    8 kHz telephone prompts, are resampled. Frames and embedding follow the
    library's own ``embed_utterance``:

    - features: :class:`ResemblyzerFeatures` (``preprocess_wav`` when
      ``preprocess=True``, then 40-band mel frames at 10 ms);
    - ``embedding="partials"`` (default): the L2-normalised mean of the
      embeddings of 1.6 s windows, as ``embed_utterance`` computes it
      (:class:`PartialUtteranceEmbedding`), identical to the library's
      embedding up to float error;
      ``embedding="utterance"``: the encoder's ``forward`` on the whole
      clip (its final LSTM state), which the library does not use.

    Either way a clip's loss depends on its own frames only. The default
    target layer is ``linear`` (256 x 257 gradient).

    Note that SimCLR's audio views add uniform noise of up to
    ``noise_scale`` (default 0.1) to the frames, which are mel *power*
    values here (often well below 0.1): consider a smaller
    ``SimCLRLoss(noise_scale=...)``.

    Parameters
    ----------
    encoder : resemblyzer.VoiceEncoder, optional
        An encoder to wrap (e.g. with custom weights). Default: a new
        ``VoiceEncoder(device=device)`` with the package's pretrained weights.
    sample_rate : int, default=16000
        Rate (Hz) of waveforms given without one.
    preprocess : bool, default=True
        Apply ``resemblyzer.preprocess_wav`` (volume normalisation and
        silence trimming; resampling happens either way).
    embedding : {"partials", "utterance"}, default="partials"
    layer : str, default="linear"
    device : str or torch.device, default="cpu"
        Where a new encoder is loaded (ignored when ``encoder`` is given).

    Examples
    --------
    >>> from skfungi.backbones.audio import ResemblyzerBackbone
    >>> backbone = ResemblyzerBackbone(sample_rate=8000)  # doctest: +SKIP
    >>> backbone.default_layer  # doctest: +SKIP
    'linear'
    """

    def __init__(
        self,
        encoder: nn.Module | None = None,
        *,
        sample_rate: int = _RESEMBLYZER_RATE,
        preprocess: bool = True,
        embedding: str = "partials",
        layer: str = "linear",
        device: str | torch.device = "cpu",
    ):
        if embedding not in _EMBEDDINGS:
            raise ValueError(f"embedding must be one of {_EMBEDDINGS}, got {embedding!r}.")
        if not isinstance(preprocess, (bool, np.bool_)):
            raise TypeError(f"preprocess must be a bool, got {preprocess!r}.")
        if encoder is None:
            encoder = _import_resemblyzer().VoiceEncoder(device=device, verbose=False)
        missing = [
            name for name in ("lstm", "linear", "relu") if not isinstance(getattr(encoder, name, None), nn.Module)
        ]
        if missing:
            raise TypeError(
                f"encoder must be a resemblyzer.VoiceEncoder (with lstm, linear and relu submodules); "
                f"{type(encoder).__name__} lacks {', '.join(missing)}."
            )
        partials = embedding == "partials"
        super().__init__(
            encoder,
            features=ResemblyzerFeatures(preprocess=bool(preprocess), partials=partials),
            sample_rate=sample_rate,
            layer=layer,
            embed=PartialUtteranceEmbedding() if partials else None,
        )
        self.preprocess = bool(preprocess)
        self.embedding = embedding


def resemblyzer_backbone(model, modality: str = "auto") -> ResemblyzerBackbone:
    """Registry builder: a ``VoiceEncoder``, or a spec name ``"pretrained"`` / a local weights path."""
    if modality not in ("auto", "audio"):
        raise ValueError(f"Resemblyzer is an audio backbone; modality={modality!r} is not possible.")
    if isinstance(model, nn.Module):
        return ResemblyzerBackbone(model)
    if model == "pretrained":
        return ResemblyzerBackbone()
    encoder = _import_resemblyzer().VoiceEncoder(device="cpu", verbose=False, weights_fpath=model)
    return ResemblyzerBackbone(encoder)
