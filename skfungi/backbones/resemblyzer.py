"""The Resemblyzer speaker encoder (a 3-layer LSTM) as an audio backbone, with its own features.

Needs the optional ``resemblyzer`` package (``pip install "setuptools<81" resemblyzer``).
A weights file (``"resemblyzer:<path>"``) is loaded strictly, not with the
library's ``strict=False``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import PackedSequence

from ._checkpoints import CheckpointError, load_strictly, read_state_dict
from .audio import AudioBackbone, batch_frames

__all__ = ["PartialUtteranceEmbedding", "ResemblyzerBackbone", "ResemblyzerFeatures", "resemblyzer_backbone"]

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
    >>> from skfungi.backbones.resemblyzer import ResemblyzerBackbone
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
    return ResemblyzerBackbone(_encoder_from_file(model))


def _encoder_from_file(path: str) -> nn.Module:
    """A ``VoiceEncoder`` with the weights of a file saved as the library saves them (``{"model_state": ...}``),
    loaded strictly (``VoiceEncoder(weights_fpath=...)`` would load them with ``strict=False``)."""
    checkpoint = read_state_dict(path)
    state = checkpoint.get("model_state") if isinstance(checkpoint, Mapping) else None
    if state is None:
        raise CheckpointError(
            f"{path} is not a Resemblyzer checkpoint: VoiceEncoder reads its weights from checkpoint['model_state']."
        )
    return load_strictly(_import_resemblyzer().VoiceEncoder(device="cpu", verbose=False), state, path)
