"""skfungi adds no dependence on the number of torch threads, for every modality.

Each case is fitted at one thread count and transformed at another, for 1, 2
and 4 threads, and compared with fitting and transforming at one thread.
The models are small but large enough that torch splits some of their matrix
products and reductions over threads.

Where the backbone's own forward gives the same bits at every thread count
(its embedding block is identical), every feature must be identical bit for
bit: views are seeded by the raw input, losses run in float64 and the
projection accumulates in float64. Where the backbone's forward itself
rounds differently (the CNN's global average pooling on this kind of CPU),
features may differ only by that rounding, never by a different view.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import tiny_bert
from timm.models.vision_transformer import VisionTransformer

from skfungi import FungiTransformer, TabularMLP
from skfungi.backbones import AudioBackbone, HuggingFaceTextBackbone, ImageBackbone, LogMelSpectrogram
from skfungi.losses import DINOLoss, KLLoss, SimCLRLoss

THREADS = (1, 2, 4)


class Speaker(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(40, 64, num_layers=2, batch_first=True)
        self.linear = nn.Linear(64, 32)

    def forward(self, frames):
        _, (hidden, _) = self.lstm(frames)
        return self.linear(hidden[-1])


def image_case():
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=48, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=0)
    images = np.random.default_rng(0).integers(0, 256, (6, 60, 52, 3), dtype=np.uint8)
    losses = (KLLoss(), DINOLoss(n_local_crops=2, latent_dim=256), SimCLRLoss(grid_size=3, n_negatives=3))
    return FungiTransformer(vit, losses=losses, random_state=0, batch_size=4), images


def cnn_case():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    images = np.random.default_rng(1).integers(0, 256, (6, 40, 40, 3), dtype=np.uint8)
    losses = (KLLoss(), SimCLRLoss(grid_size=3, n_negatives=3))
    return FungiTransformer(ImageBackbone(net, input_size=32), losses=losses, layer="2", random_state=0), images


def text_case(bert_dir):
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(bert_dir, local_files_only=True)
    backbone = HuggingFaceTextBackbone(tiny_bert(), tokenizer=tokenizer)
    texts = ["the cat sat on the mat", "a big red dog ran fast", "the small blue bird sings", "a cat", "dog runs"]
    losses = (KLLoss(), SimCLRLoss(n_views=4, n_negatives=3))
    return FungiTransformer(backbone, losses=losses, random_state=0, batch_size=4), texts


def audio_case():
    torch.manual_seed(0)
    backbone = AudioBackbone(Speaker(), features=LogMelSpectrogram(n_mels=40), sample_rate=8000)
    rng = np.random.default_rng(0)
    clips = [rng.uniform(-0.5, 0.5, n).astype(np.float32) for n in (4000, 6400, 4000, 9000, 5200)]
    losses = (KLLoss(), SimCLRLoss(n_views=4, n_negatives=3))
    return FungiTransformer(backbone, losses=losses, random_state=0, batch_size=4), clips


def tabular_case():
    rows = np.random.default_rng(0).normal(size=(40, 24))
    losses = (KLLoss(), SimCLRLoss(n_views=4, n_negatives=8))
    return FungiTransformer(TabularMLP(hidden=(128, 128)), losses=losses, random_state=0, batch_size=16), rows


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("case", ["image", "cnn", "text", "audio", "tabular"])
def test_features_are_bitwise_identical_at_any_thread_count(case, bert_dir, restore_threads):
    def make():
        return {
            "image": image_case,
            "cnn": cnn_case,
            "text": lambda: text_case(bert_dir),
            "audio": audio_case,
            "tabular": tabular_case,
        }[case]()

    fitted = {}
    for threads in THREADS:
        torch.set_num_threads(threads)
        fungi, X = make()
        fitted[threads] = fungi.set_params(num_threads=None).fit(X)  # torch's count, not the small-forward rule
    torch.set_num_threads(1)
    reference = fitted[1].transform(X)
    width = fitted[1].embedding_dim_
    for fit_threads in THREADS:
        for transform_threads in THREADS:
            torch.set_num_threads(transform_threads)
            features = fitted[fit_threads].transform(X)
            if np.array_equal(features[:, :width], reference[:, :width]):
                assert np.array_equal(features, reference), (case, fit_threads, transform_threads)
            else:  # the backbone's own forward depends on the thread count: rounding-level differences only
                np.testing.assert_allclose(features, reference, atol=1e-5)


class ThreadsSeen(nn.Module):
    """A linear embedding that records torch's thread count at every forward."""

    def __init__(self, width: int):
        super().__init__()
        self.linear = nn.Linear(width, 8)
        self.seen = []

    def forward(self, rows):
        self.seen.append(torch.get_num_threads())
        return self.linear(rows)


@pytest.mark.parametrize(
    "width, setting, expected",
    [
        (16, "auto", 1),  # a forward of 16 rows x 2 x 16 x 8 = 4,096 FLOPs: small, one thread
        (64, "auto", 3),  # 16,384 FLOPs: large, torch's count
        (16, 2, 2),  # an int sets the count
        (16, None, 3),  # None leaves torch's setting alone
    ],
)
def test_num_threads_runs_small_forwards_at_one_thread_and_restores_the_count(
    width, setting, expected, restore_threads, monkeypatch
):
    from skfungi._utils import threads
    from skfungi.backbones import TabularBackbone

    monkeypatch.setattr(threads, "SMALL_FORWARD_FLOPS", 10_000)  # 1 GFLOP by default: scaled to tiny modules
    torch.manual_seed(0)
    module = ThreadsSeen(width)
    rows = np.random.default_rng(0).normal(size=(16, width)).astype(np.float32)
    fungi = FungiTransformer(TabularBackbone(module), losses=("kl",), num_threads=setting, batch_size=16)
    torch.set_num_threads(3)
    fungi.fit(rows).transform(rows)
    assert fungi.extractor_.flops_per_view == 2 * width * 8
    assert set(module.seen[1:]) == {expected}  # the first forward, fit's probe, runs before the rule is known
    assert torch.get_num_threads() == 3


@pytest.mark.parametrize("count", [1025, 10**6])
def test_a_thread_count_no_machine_can_start_is_refused_naming_num_threads(count, restore_threads):
    """num_threads=10**6 went to torch.set_num_threads, which killed the process (a segmentation fault)."""
    from sklearn.utils._param_validation import InvalidParameterError

    model, rows = tabular_case()
    with pytest.raises(InvalidParameterError, match=r"'num_threads' parameter .* range \[1, 1024\]"):
        model.set_params(num_threads=count).fit(rows)
    model.set_params(num_threads=1).fit(rows)
    with pytest.raises(InvalidParameterError, match="'num_threads'"):
        model.set_params(num_threads=count).transform(rows[:2])
