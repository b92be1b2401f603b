"""Audio: waveform validation, the generic LSTM adapter, and the Resemblyzer speaker encoder."""

from __future__ import annotations

import glob
import importlib.util
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import engine_gradients, reference_gradient
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline

from skfungi import FungiTransformer
from skfungi.backbones import resolve_backbone
from skfungi.backbones.audio import AudioBackbone
from skfungi.backbones.layers import last_linear
from skfungi.backbones.mel import LogMelSpectrogram, mel_filterbank
from skfungi.backbones.resemblyzer import PartialUtteranceEmbedding
from skfungi.inputs.audio import as_waveforms
from skfungi.losses import KLLoss, SimCLRLoss

N_BANDS = 8


def log_power_frames(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Frames of 32 samples every 16, Hann-windowed; log power in 8 bands of 2 FFT bins."""
    frames = waveform.unfold(0, 32, 16) * torch.hann_window(32)
    power = torch.fft.rfft(frames).abs().square()[:, : 2 * N_BANDS]
    return torch.log(power.unflatten(1, (N_BANDS, 2)).sum(-1) + 1e-6)


class TinySpeaker(nn.Module):
    """One LSTM layer, then the final projection (the target layer)."""

    def __init__(self, n_inputs: int = N_BANDS):
        super().__init__()
        self.lstm = nn.LSTM(n_inputs, 12, batch_first=True)
        self.linear = nn.Linear(12, 6)

    def forward(self, frames):
        _, (hidden, _) = self.lstm(frames)
        return self.linear(hidden[-1])


class TinyVoiceEncoder(nn.Module):
    """Resemblyzer's shape in miniature: a 2-layer LSTM, ``linear``, ``relu``, L2-normalised."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(N_BANDS, 10, num_layers=2, batch_first=True)
        self.linear = nn.Linear(10, 7)
        self.relu = nn.ReLU()

    def forward(self, frames):
        _, (hidden, _) = self.lstm(frames)
        embedding = self.relu(self.linear(hidden[-1]))
        return embedding / embedding.norm(dim=1, keepdim=True)


class LastStepSpeaker(TinySpeaker):
    """Indexes the LSTM output as a tensor, so it cannot take a PackedSequence."""

    def forward(self, frames):
        output, _ = self.lstm(frames)
        return self.linear(output[:, -1])


def tiny_speaker(dtype=torch.float32, seed=0) -> TinySpeaker:
    torch.manual_seed(seed)
    return TinySpeaker().to(dtype)


def tiny_backbone(dtype=torch.float32) -> AudioBackbone:
    return AudioBackbone(tiny_speaker(dtype), features=log_power_frames, sample_rate=8000)


def partials_backbone(dtype=torch.float64) -> AudioBackbone:
    torch.manual_seed(1)
    return AudioBackbone(
        TinyVoiceEncoder().to(dtype),
        features=log_power_frames,
        sample_rate=8000,
        embed=PartialUtteranceEmbedding(partial_frames=10, step=4),
    )


def make_clips(lengths=(400, 250, 610, 250, 330, 480), seed=0) -> list[np.ndarray]:
    """Noisy tones; lengths differ (two are equal), so batches mix stacked and packed paths."""
    rng = np.random.default_rng(seed)
    clips = []
    for index, length in enumerate(lengths):
        t = np.arange(length) / 8000
        tone = np.sin(2 * np.pi * (300 + 900 * (index % 2)) * t)
        clips.append((0.5 * tone + 0.1 * rng.standard_normal(length)).astype(np.float32))
    return clips


pytestmark = pytest.mark.usefixtures("one_torch_thread")


SMALL_LOSSES = (KLLoss(), SimCLRLoss(n_views=4, latent_dim=16, n_negatives=3))


@pytest.fixture(scope="module")
def clips():
    return make_clips()


@pytest.fixture(scope="module")
def fitted(clips):
    return FungiTransformer(tiny_backbone(), losses=SMALL_LOSSES, random_state=0, batch_size=4).fit(clips)


# -- the adapter ------------------------------------------------------------------------------


def test_default_layer_is_the_last_linear():
    module = nn.Sequential(nn.Linear(4, 4), nn.LSTM(4, 4), nn.Linear(4, 3))
    assert last_linear(module) == "2"
    assert AudioBackbone(tiny_speaker()).default_layer == "linear"
    assert AudioBackbone(tiny_speaker(), layer="lstm").default_layer == "lstm"
    assert AudioBackbone(nn.LSTM(4, 4)).default_layer is None


def test_module_without_linear_asks_for_a_layer(clips):
    class OnlyLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(N_BANDS, 5, batch_first=True)

        def forward(self, frames):
            return self.lstm(frames)[1][0][-1]

    backbone = AudioBackbone(OnlyLSTM(), features=log_power_frames)
    with pytest.raises(ValueError, match="no default target layer"):
        FungiTransformer(backbone, losses=("kl",)).fit(clips)


def test_canonical_form_is_the_feature_frames(clips):
    backbone = tiny_backbone()
    sample = backbone.as_samples(clips)[0]
    frames = backbone.canonical(sample, 0)
    assert frames.dtype == torch.float32 and frames.shape == (1 + (400 - 32) // 16, N_BANDS)
    assert backbone.inference_view(frames) is frames
    clone = type(sample)(sample.samples.clone(), sample.sample_rate)
    assert backbone.sample_key(sample) == backbone.sample_key(clone)
    assert backbone.sample_key(sample) != backbone.sample_key(type(sample)(sample.samples, 16000))


def test_plain_module_with_audio_inputs_gets_the_audio_adapter(clips):
    backbone = resolve_backbone(TinySpeaker(n_inputs=128), X=clips)
    assert isinstance(backbone, AudioBackbone) and isinstance(backbone.features_fn, LogMelSpectrogram)
    fungi = FungiTransformer(TinySpeaker(n_inputs=128), losses=("kl",), random_state=0).fit(clips)
    assert fungi.modality_ == "audio" and fungi.layer_ == "linear"
    assert fungi.transform(clips[:2]).shape == (2, 12)


def test_each_clip_gets_its_own_sample_rate():
    seen = []

    def features(waveform, sample_rate):
        seen.append(sample_rate)
        return log_power_frames(waveform, sample_rate)

    backbone = AudioBackbone(tiny_speaker(), features=features, sample_rate=16000)
    samples = backbone.as_samples([np.zeros(100, np.float32), (np.zeros(100, np.float32), 8000)])
    for index, sample in enumerate(samples):
        backbone.canonical(sample, index)
    assert seen == [16000, 8000]


# -- the properties: batch invariance, determinism, gradients -------------------------------------


def test_features_do_not_depend_on_the_batch(fitted, clips):
    together = fitted.transform(clips)
    alone = np.concatenate([fitted.transform([clip]) for clip in clips])
    order = np.random.default_rng(1).permutation(len(clips))
    shuffled = fitted.transform([clips[i] for i in order])
    np.testing.assert_allclose(alone, together, atol=1e-5)
    np.testing.assert_allclose(shuffled, together[order], atol=1e-5)
    # a clip whose batch mates all share its length takes the stacked path, not the packed one
    same_length = fitted.transform([clips[1], clips[3]])
    np.testing.assert_allclose(same_length, together[[1, 3]], atol=1e-5)


def test_same_seed_same_features_other_seed_other_features(fitted, clips):
    again = FungiTransformer(tiny_backbone(), losses=SMALL_LOSSES, random_state=0, batch_size=4).fit(clips)
    other = FungiTransformer(tiny_backbone(), losses=SMALL_LOSSES, random_state=1, batch_size=4).fit(clips)
    reference = fitted.transform(clips)
    np.testing.assert_array_equal(again.transform(clips), reference)
    width = fitted.embedding_dim_
    np.testing.assert_array_equal(other.transform(clips)[:, :width], reference[:, :width])  # embedding: no seed
    assert np.abs(other.transform(clips)[:, width:] - reference[:, width:]).max() > 1e-2


class RoundingFrames:
    """``log_power_frames``, moved by one float32 step when ``shifted``: the rounding of an FFT
    that splits its work differently with the number of threads, or on another machine."""

    shifted = False

    def __call__(self, waveform, sample_rate):
        frames = log_power_frames(waveform, sample_rate)
        return torch.nextafter(frames, torch.full_like(frames, np.inf)) if self.shifted else frames


def test_views_are_seeded_by_the_waveform_not_by_its_rounded_frames(clips):
    backbone = AudioBackbone(tiny_speaker(), features=RoundingFrames(), sample_rate=8000)
    fungi = FungiTransformer(backbone, losses=SMALL_LOSSES, random_state=0, batch_size=4).fit(clips)
    first = fungi.transform(clips)
    fungi.backbone_.features_fn.shifted = True  # every frame one step up
    second = fungi.transform(clips)
    assert not np.array_equal(first, second)
    np.testing.assert_allclose(first, second, atol=1e-4)  # a re-seeded view would move them by ~1


BACKBONES_FLOAT64 = {"lstm-packed": lambda: tiny_backbone(torch.float64), "partials": partials_backbone}


@pytest.mark.parametrize("backbone_name", list(BACKBONES_FLOAT64))
@pytest.mark.parametrize(
    "loss", [KLLoss(), SimCLRLoss(n_views=5, latent_dim=16, n_negatives=3)], ids=lambda loss: loss.name
)
def test_per_sample_gradients_match_autograd_loop(backbone_name, loss, clips):
    fungi = FungiTransformer(BACKBONES_FLOAT64[backbone_name](), losses=(loss,), random_state=3, batch_size=12)
    fungi.fit(clips)
    samples = fungi.backbone_.as_samples(clips)
    raw = [samples[i] for i in range(len(samples))]
    batch = [fungi.backbone_.canonical(sample, i) for i, sample in enumerate(raw)]
    assert len({frames.shape[0] for frames in batch}) > 1  # the engine sees packed, ragged batches
    fast = engine_gradients(fungi, fungi.losses_[0], batch, raw)
    for index, frames in enumerate(batch):
        slow = reference_gradient(fungi, fungi.losses_[0], frames, raw[index])
        assert slow.abs().max() > 0
        torch.testing.assert_close(fast[index], slow, rtol=1e-9, atol=1e-12)


def test_partial_embedding_is_the_mean_of_window_embeddings():
    backbone = partials_backbone(torch.float64)
    frames = torch.randn(22, N_BANDS, dtype=torch.float64)  # windows start at 0, 4, 8, 12
    with torch.no_grad():
        batched = backbone.embed([frames, frames[:10], frames[:14]])
        windows = backbone.module(torch.stack([frames[start : start + 10] for start in (0, 4, 8, 12)]))
    expected = torch.nn.functional.normalize(windows.mean(0), dim=0)
    torch.testing.assert_close(batched[0], expected)
    torch.testing.assert_close(batched[1], backbone.module(frames[None, :10])[0])


# -- estimator glue ---------------------------------------------------------------------------------


def test_grid_search_over_losses():
    clips = make_clips(lengths=(300, 420, 260, 380, 300, 500, 340, 460), seed=2)
    labels = np.arange(len(clips)) % 2
    pipeline = Pipeline(
        [
            ("fungi", FungiTransformer(tiny_backbone(), random_state=0, batch_size=16)),
            ("knn", KNeighborsClassifier(n_neighbors=1)),
        ]
    )
    search = GridSearchCV(pipeline, {"fungi__losses": [("kl",), ("kl", "simclr")]}, cv=2).fit(clips, labels)
    assert search.best_params_["fungi__losses"] in [("kl",), ("kl", "simclr")]
    assert search.cv_results_["mean_test_score"].shape == (2,)


def test_pickle_round_trip_gives_identical_features(fitted, clips):
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.transform(clips), fitted.transform(clips))


def test_pickle_round_trip_with_the_default_log_mel(clips):
    fungi = FungiTransformer(TinySpeaker(n_inputs=128), losses=("kl",), random_state=0).fit(clips)
    restored = pickle.loads(pickle.dumps(fungi))
    np.testing.assert_array_equal(restored.transform(clips), fungi.transform(clips))


# -- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("X", "error", "message"),
    [
        ([], ValueError, "X is empty"),
        ([np.zeros(10, np.float32), np.zeros(0, np.float32)], ValueError, "sample 1 is an empty waveform"),
        ([np.zeros(10), np.zeros((2, 10))], ValueError, r"sample 1 has shape \(2, 10\); a waveform must be 1-D"),
        ([np.zeros((2, 400), np.float32)], ValueError, "mix it down to mono"),
        ([np.zeros(10, np.int16)], TypeError, r"sample 0 has integer dtype int16.*/ 32768"),
        ([torch.zeros(10, dtype=torch.int32)], TypeError, r"int32.*wav.float\(\) / 2147483648"),
        ([np.zeros(10, bool)], TypeError, "sample 0 has dtype bool"),
        ([np.zeros(10, np.float32), (np.zeros(10, np.float32), 0)], ValueError, "sample rate of sample 1"),
        ([(np.zeros(10), 8000, "x")], ValueError, "sample 0 is a tuple of 3 items"),
        (["clip.wav"], TypeError, "sample 0 is a str"),
        (np.zeros(10, np.float32), ValueError, "single 1-D ndarray.*\\[waveform\\]"),
        (np.zeros((3, 10), np.float32), ValueError, r"2-D ndarray.*list\(X\)"),
        (np.zeros((2, 8, 8, 3), np.uint8), ValueError, "looks like images"),
        ("clip.wav", TypeError, "not a string"),
        ({"a": 1}, TypeError, "got dict"),
    ],
)
def test_bad_collections_are_refused(X, error, message):
    with pytest.raises(error, match=message):
        as_waveforms(X, 8000)


def test_nan_and_inf_name_the_sample():
    clips = make_clips()
    clips[2] = clips[2].copy()
    clips[2][7] = np.nan
    with pytest.raises(ValueError, match=r"sample 2 contains NaN or infinite values \(first at position 7\)"):
        as_waveforms(clips, 8000)
    with pytest.raises(ValueError, match="sample 0 contains NaN"):
        as_waveforms([torch.full((5,), float("inf"))], 8000)


def test_object_array_of_clips_is_a_collection(clips):
    array = np.empty(len(clips), dtype=object)
    array[:] = clips
    assert len(as_waveforms(array, 8000)) == len(clips)


def test_images_at_transform_are_refused(fitted):
    with pytest.raises(ValueError, match="looks like images"):
        fitted.transform(np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"sample 0 has shape \(8, 8, 3\)"):
        fitted.transform([np.zeros((8, 8, 3), np.float32)])


def test_bad_features_name_the_sample(fitted, clips):
    with pytest.raises(ValueError, match=r"failed on sample 1 \(20 samples at 8000 Hz\): maximum size"):
        fitted.transform([clips[0], np.zeros(20, np.float32)])  # shorter than one 32-sample frame
    backbone = AudioBackbone(tiny_speaker(), features=lambda waveform, rate: torch.zeros(0, N_BANDS))
    with pytest.raises(ValueError, match=r"sample 0 have shape \(0, 8\): no frames from a clip of 400 samples"):
        backbone.canonical(backbone.as_samples(clips)[0], 0)
    backbone = AudioBackbone(tiny_speaker(), features=lambda waveform, rate: waveform)
    with pytest.raises(ValueError, match=r"features of sample 0 have shape \(400,\); expected \(frames, features\)"):
        backbone.canonical(backbone.as_samples(clips)[0], 0)
    backbone = AudioBackbone(tiny_speaker(), features=lambda waveform, rate: torch.log(waveform[:8].reshape(2, 4)))
    with pytest.raises(ValueError, match="features of sample 0 contain NaN or infinite values"):
        backbone.canonical(backbone.as_samples([-np.ones(8, np.float32)])[0], 0)

    def failing(waveform, rate):
        raise RuntimeError("unsupported rate")

    backbone = AudioBackbone(tiny_speaker(), features=failing)
    with pytest.raises(ValueError, match=r"failed on sample 0 \(8 samples at 16000 Hz\): unsupported rate"):
        backbone.canonical(backbone.as_samples([np.ones(8, np.float32)])[0], 0)


def test_module_that_cannot_take_packed_sequences_is_explained(clips):
    torch.manual_seed(0)
    backbone = AudioBackbone(LastStepSpeaker(), features=log_power_frames)
    fungi = FungiTransformer(backbone, losses=("kl",), random_state=0)
    assert fungi.fit(clips[1:2]).transform([clips[1], clips[3]]).shape == (2, 12)  # equal lengths: stacked
    with pytest.raises(TypeError, match=r"LastStepSpeaker failed on a PackedSequence.*embed function"):
        fungi.transform(clips)


def test_frames_of_different_widths_are_refused(clips):
    with pytest.raises(ValueError, match=r"same width; got widths \[4, 8\]"):
        tiny_backbone().embed([torch.zeros(5, 8), torch.zeros(5, 4)])


def test_bad_adapter_arguments():
    with pytest.raises(TypeError, match=r"'module' parameter of AudioBackbone must be an instance of"):
        AudioBackbone("lstm")
    with pytest.raises(TypeError, match="'features' parameter of AudioBackbone must be None or a callable"):
        AudioBackbone(tiny_speaker(), features="mel")
    with pytest.raises(ValueError, match="'sample_rate' parameter of AudioBackbone must be an int"):
        AudioBackbone(tiny_speaker(), sample_rate=16000.5)
    with pytest.raises(ValueError, match="'n_mels' parameter of LogMelSpectrogram must be an int"):
        LogMelSpectrogram(n_mels=0)
    with pytest.raises(ValueError, match="f_max must be above f_min=100"):
        LogMelSpectrogram(f_min=100, f_max=50)
    with pytest.raises(ValueError, match="above the Nyquist"):
        LogMelSpectrogram(f_max=6000)(torch.zeros(800), 8000)


def test_the_first_docs_example_runs():
    text = (Path(__file__).parents[1] / "docs" / "audio.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert blocks, "docs/audio.md has no python example"
    exec(compile(blocks[0], "docs/audio.md", "exec"), {})


# -- the default features function ------------------------------------------------------------------


def test_log_mel_frames_count_and_filters():
    frames = LogMelSpectrogram(n_mels=20)(torch.randn(8000), 8000)
    assert frames.shape == (1 + 8000 // 80, 20) and frames.dtype == torch.float32
    filters = mel_filterbank(200, 8000, 20, 0.0, 4000.0)
    assert filters.shape == (20, 101) and float(filters.max()) <= 1.0
    assert bool((filters.sum(1) > 0).all())


@pytest.mark.skipif(importlib.util.find_spec("librosa") is None, reason="librosa is not installed")
def test_log_mel_filters_match_librosa():
    import librosa

    expected = librosa.filters.mel(sr=16000, n_fft=400, n_mels=40, fmin=50.0, fmax=7000.0, htk=True, norm=None)
    np.testing.assert_allclose(mel_filterbank(400, 16000, 40, 50.0, 7000.0).numpy(), expected, atol=1e-6)


# -- the real model ------------------------------------------------------------------------------------

ASTERISK = "/usr/share/asterisk/sounds/en"


def resemblyzer_clips() -> tuple[list, bool]:
    """Three real 8 kHz prompts when Debian's asterisk-core-sounds-en-wav is installed, else tones."""
    paths = sorted(glob.glob(f"{ASTERISK}/*.wav"))
    if paths and importlib.util.find_spec("soundfile") is not None:
        import soundfile

        clips = [soundfile.read(path, dtype="float32") for path in paths]
        return sorted(clips, key=lambda clip: len(clip[0]))[:3], True
    rng = np.random.default_rng(0)
    t = np.arange(12000) / 8000
    tones = [np.sin(2 * np.pi * f * t) * (0.3 + 0.2 * np.sin(7 * t)) for f in (180, 220, 270)]
    return [((tone + 0.01 * rng.standard_normal(t.size)).astype(np.float32), 8000) for tone in tones], False


@pytest.mark.slow
def test_resemblyzer_shapes_determinism_and_library_embedding():
    pytest.importorskip("resemblyzer", reason="resemblyzer is not installed (pip install 'setuptools<81' resemblyzer)")
    import librosa
    from resemblyzer import preprocess_wav

    from skfungi.backbones.resemblyzer import ResemblyzerBackbone, resemblyzer_backbone

    clips, real = resemblyzer_clips()
    backbone = ResemblyzerBackbone(preprocess=real)
    losses = (KLLoss(), SimCLRLoss(n_views=2, n_negatives=2, negative_views=1, noise_scale=0.01))
    features = FungiTransformer(backbone, losses=losses, random_state=0).fit_transform(clips)
    assert features.shape == (3, 3 * 256) and np.isfinite(features).all()
    again = FungiTransformer(backbone, losses=losses, random_state=0).fit_transform(clips)
    np.testing.assert_array_equal(again, features)

    wav, rate = clips[0]
    wav = preprocess_wav(wav, source_sr=rate) if real else librosa.resample(wav, orig_sr=rate, target_sr=16000)
    library = backbone.module.embed_utterance(wav)
    np.testing.assert_allclose(features[0, :256], library, atol=1e-5)

    utterance = ResemblyzerBackbone(backbone.module, preprocess=real, embedding="utterance")
    frames = utterance.canonical(utterance.as_samples(clips[:1])[0], 0)
    with torch.no_grad():
        torch.testing.assert_close(utterance.embed([frames]), backbone.module(frames[None]))
    assert isinstance(resemblyzer_backbone(backbone.module), ResemblyzerBackbone)
    with pytest.raises(ValueError, match="Resemblyzer is an audio backbone"):
        resemblyzer_backbone(backbone.module, modality="image")


# -- sample rates: whole numbers of any numeric type -----------------------------------------------


@pytest.mark.parametrize("rate", [8000.0, np.float64(8000.0), np.float32(8000.0), np.int64(8000), np.uint16(8000)])
def test_a_whole_sample_rate_of_any_numeric_type_is_the_int(clips, rate):
    backbone = AudioBackbone(tiny_speaker(), features=log_power_frames, sample_rate=rate)
    assert backbone.sample_rate == 8000 and type(backbone.sample_rate) is int
    samples = as_waveforms([clips[0], (clips[1], rate)], rate)
    assert [sample.sample_rate for sample in samples] == [8000, 8000]
    assert all(type(sample.sample_rate) is int for sample in samples)
    fungi = FungiTransformer(backbone, losses=("kl",), random_state=0).fit(clips[:2])
    reference = FungiTransformer(tiny_backbone(), losses=("kl",), random_state=0).fit(clips[:2])
    np.testing.assert_array_equal(fungi.transform([(clips[2], rate)]), reference.transform([clips[2]]))


@pytest.mark.parametrize("rate", [8000.5, float("nan"), float("inf"), True, np.bool_(True), "8000", 0.0, -8000])
def test_a_sample_rate_that_is_no_positive_whole_number_is_refused(clips, rate):
    with pytest.raises(ValueError, match=r"the sample rate of sample 1 must be a positive whole number of Hz"):
        as_waveforms([clips[0], (clips[1], rate)], 8000)
    with pytest.raises(ValueError, match=r"'sample_rate' parameter of AudioBackbone must be an int or a whole float"):
        AudioBackbone(tiny_speaker(), sample_rate=rate)
