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

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils.rnn import PackedSequence, pack_sequence, pad_packed_sequence

from .._utils.seeding import content_key
from .._utils.sklearn_compat import validate_parameter_constraints
from .._utils.validation import whole_range
from ..inputs.audio import Waveform, as_waveforms
from ..inputs.columns import unwrap_column
from ._base import Backbone
from .layers import last_linear
from .mel import LogMelSpectrogram

__all__ = ["AudioBackbone", "LogMelSpectrogram", "batch_frames"]

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
        resamples: the features function receives each clip's rate, an int
        (a whole float such as ``8000.0`` is taken as one; ``8000.5`` is refused).
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
        validate_parameter_constraints(
            {
                "module": [nn.Module],
                "features": [None, callable],
                "sample_rate": [whole_range(1)],  # 8000.0 as well as 8000
                "layer": [None, str],
                "embed": [None, callable],
            },
            {"module": module, "features": features, "sample_rate": sample_rate, "layer": layer, "embed": embed},
            caller_name=type(self).__name__,
        )
        self.module = module
        self.features_fn = features if features is not None else LogMelSpectrogram()
        self.sample_rate = int(sample_rate)
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

    def embed(self, views) -> torch.Tensor:
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
