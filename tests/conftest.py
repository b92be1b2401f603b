"""Tiny, randomly initialised backbones and images shared by the tests."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer

import skfungi._engine.extractor
from skfungi import FungiTransformer, ImageBackbone, TimmBackbone
from skfungi._engine.extractor import ExtractionRun
from skfungi._engine.samples import KeyedSample
from skfungi._utils.seeding import derive_seed, generator
from skfungi.backbones import frozen_eval

if os.environ.get("SKFUNGI_TEST_TORCH_THREADS"):  # `make test-one-thread`: the whole suite at that count
    torch.set_num_threads(int(os.environ["SKFUNGI_TEST_TORCH_THREADS"]))

# The library stores negative banks only when asked (FungiTransformer(memory=...)); the demo asks for the
# user's cache folder unless SKFUNGI_CACHE_DIR=off, so that its tests write nothing outside their folders.
os.environ["SKFUNGI_CACHE_DIR"] = "off"


def tiny_vit(dtype=torch.float32, seed=0) -> VisionTransformer:
    torch.manual_seed(seed)
    model = VisionTransformer(img_size=16, patch_size=8, embed_dim=12, depth=2, num_heads=2, num_classes=0)
    return model.to(dtype)


class TinyCNN(nn.Module):
    """3x3 stem, a 1x1 conv (the target), BatchNorm, global average pooling."""

    def __init__(self, bias: bool = True):
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.pointwise = nn.Conv2d(6, 10, 1, bias=bias)
        self.norm = nn.BatchNorm2d(10)
        with torch.no_grad():  # non-trivial running statistics
            self.norm.running_mean.uniform_(-0.5, 0.5)
            self.norm.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.norm(self.pointwise(x)))
        return x.mean(dim=(2, 3))


def tiny_cnn(dtype=torch.float32, bias=True, seed=0) -> TinyCNN:
    torch.manual_seed(seed)
    return TinyCNN(bias=bias).to(dtype)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for the rest of the test module, restored at its end.

    Tiny tensors gain nothing from intra-op threads; on a busy 2-core machine OpenMP's
    barriers made single small calls take seconds of wall time. It is module-scoped so that
    a module-scoped fixture fitted for a test (set up before function-scoped fixtures) runs
    at the same thread count as the test: features are bitwise equal only at equal thread
    counts (docs/guarantees.md). A module asks for it in ``pytestmark``, so every test and
    fixture of the module runs at one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def extracted_rows():
    """Counts the samples FungiTransformer extracts features (embedding + every loss's gradients) for."""
    counter = {"rows": 0}
    original = skfungi._engine.extractor.FeatureExtractor.transform

    def counting(self, samples, options):
        counter["rows"] += len(samples)
        return original(self, samples, options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(skfungi._engine.extractor.FeatureExtractor, "transform", counting)
        yield counter


@pytest.fixture
def vit_backbone():
    return TimmBackbone(tiny_vit())


@pytest.fixture
def cnn_backbone():
    return ImageBackbone(tiny_cnn(), layer="pointwise", input_size=12)


@pytest.fixture
def images():
    """Six uint8 RGB images, (N, H, W, C)."""
    return np.random.default_rng(0).integers(0, 256, size=(6, 20, 20, 3), dtype=np.uint8)


# -- the slow, obviously correct per-sample gradient, for any backbone and loss --


def reference_gradient(fungi: FungiTransformer, loss, image: torch.Tensor, raw=None) -> torch.Tensor:
    """The sample's weight gradient (bias column last) from torch.autograd.grad on the weights.

    ``image`` is the canonical sample; ``raw`` the sample its views' seed is keyed on (default: ``image``).
    """
    backbone = fungi.backbone_
    layer = backbone.module.get_submodule(fungi.layer_)
    params = [layer.weight] + ([layer.bias] if layer.bias is not None else [])
    with frozen_eval(backbone.module):
        for param in params:
            param.requires_grad_(True)
        seed = derive_seed(fungi.seed_, "views", loss.name, backbone.sample_key(image if raw is None else raw))
        groups = loss.views(image, backbone, generator(seed))
        embeddings = torch.cat([backbone.embed(views).unsqueeze(0) for views in groups], dim=1).double()
        grads = torch.autograd.grad(loss.sample_losses(embeddings).sum(), params)
    weight_grad = grads[0].reshape(grads[0].shape[0], -1)
    columns = [weight_grad] + ([grads[1].unsqueeze(1)] if len(grads) > 1 else [])
    return torch.cat(columns, dim=1)


def engine_gradients(fungi: FungiTransformer, loss, batch: list[torch.Tensor], raw=None) -> torch.Tensor:
    """The engine's per-sample gradients for a whole batch (dense reduce = flattened gradient).

    ``batch`` holds canonical samples; ``raw`` the samples their views' seeds are keyed on (default: ``batch``).
    """
    extractor = ExtractionRun(fungi.extractor_, fungi._run_options())
    keyed = [KeyedSample(sample, sample, fungi.backbone_) for sample in batch]
    if raw is not None:
        keyed = [KeyedSample(sample, original, fungi.backbone_) for sample, original in zip(batch, raw, strict=True)]
    with frozen_eval(fungi.backbone_.module):
        if loss.uses_inference_view:
            _, reduced = extractor._inference_pass(keyed)
            flat = reduced[loss.name]
        else:
            flat = extractor._loss_pass(loss, keyed)
    return flat.reshape(len(batch), *fungi.gradient_shape_)


# -- a tiny Hugging Face text encoder in a local directory (for "hf:<dir>" specs) --

WORDS = "the a cat dog sat on mat big small red blue runs fast slow and ran bird sings loud quiet tree under".split()
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_bert(dtype=torch.float32, seed=0, layers=2):
    """A random 2-layer BERT (width 16) over the word-level vocabulary ``SPECIAL_TOKENS + WORDS``."""
    import transformers

    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=len(SPECIAL_TOKENS) + len(WORDS),
        hidden_size=16,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    return transformers.BertModel(config).to(dtype)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A local model directory: tiny random BERT + a word-level vocabulary."""
    pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tiny-bert")
    (folder / "vocab.txt").write_text("\n".join(SPECIAL_TOKENS + WORDS) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}))
    tiny_bert().save_pretrained(folder)
    return str(folder)
