"""
# Audio: clips through a GRU

An audio backbone turns each clip into feature frames (a log-mel spectrogram
by default) and embeds them with any `nn.Module`; FUNGI adds the per-sample
gradients of KL and SimCLR at one of its linear layers. Clips may differ in
length and sample rate. Here a tiny random GRU hears synthetic chirps going
up or down; a pretrained speaker encoder (`ResemblyzerBackbone`) is covered
in the [audio guide](../../audio.md).
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from skfungi import FungiTransformer
from skfungi.backbones.audio import AudioBackbone, LogMelSpectrogram


class GRUEncoder(nn.Module):
    """Frames (N, T, F) or a PackedSequence of clips of different lengths -> (N, 24)."""

    def __init__(self, n_mels=32):
        super().__init__()
        self.gru = nn.GRU(n_mels, 24, batch_first=True)
        self.head = nn.Linear(24, 24)  # the last nn.Linear: the default target layer

    def forward(self, frames):
        _, hidden = self.gru(frames)
        return self.head(hidden[-1])


def chirp(rising, duration, rate, rng):
    t = np.arange(int(duration * rate)) / rate
    start, stop = (400, 1600) if rising else (1600, 400)
    phase = 2 * np.pi * (start * t + (stop - start) * t**2 / (2 * duration))
    return (np.sin(phase) + 0.2 * rng.standard_normal(t.size)).astype(np.float32)


rng = np.random.default_rng(0)
clips, labels = [], []
for index in range(24):
    rate = (8000, 16000)[index % 3 == 0]  # mixed rates: pass (waveform, rate) pairs
    rising = index % 2 == 0
    clips.append((chirp(rising, rng.uniform(0.2, 0.4), rate, rng), rate))
    labels.append("up" if rising else "down")

# %%
# ## What the encoder hears
#
# The backbone turns each clip into log-mel frames before the GRU. `f_max`
# fixes the top mel band for every clip, so 8 kHz and 16 kHz clips get the
# same bands.

frames = LogMelSpectrogram(n_mels=32, f_max=4000)
fig, axes = plt.subplots(1, 2, figsize=(7, 2.8), sharey=True)
for ax, (waveform, rate), label in zip(axes, clips[:2], labels[:2], strict=True):
    ax.imshow(frames(torch.from_numpy(waveform), rate).numpy().T, origin="lower", aspect="auto", cmap="magma")
    ax.set_title(f"{label}: {len(waveform) / rate:.2f} s at {rate // 1000} kHz")
    ax.set_xlabel("frame (10 ms)")
axes[0].set_ylabel("mel band")
fig.tight_layout()
plt.show()

# %%
# ## Features and a classifier

torch.manual_seed(0)  # the GRU's random weights
backbone = AudioBackbone(GRUEncoder(), features=frames, sample_rate=16000)
fungi = FungiTransformer(backbone, losses=("kl", "simclr"), random_state=0)
pipe = make_pipeline(fungi, LogisticRegression(max_iter=2000))
pipe.fit(clips[:16], labels[:16])
print(f"test accuracy: {pipe.score(clips[16:], labels[16:]):.2f}")
print(fungi.get_feature_names_out()[[0, 24, 48]], "target layer:", fungi.layer_)

# %%
# ## A clip's features do not depend on its batch
#
# Clips of different lengths go to the GRU as a `PackedSequence`, so nothing
# is padded behind the module's back: a clip transformed alone gets the
# features it gets inside a batch.

together = fungi.transform(clips[16:])
alone = fungi.transform([clips[16]])
print("max difference, alone vs in a batch:", float(np.abs(together[0] - alone[0]).max()))
