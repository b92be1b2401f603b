"""The opt-in disk cache of SimCLR negative banks (``FungiTransformer(memory=...)``): a stored bank is used
only if it equals what encoding it again would give, bit for bit; off by default; a damaged file is named
and replaced. Each audit case (a change the old key did not see) has its test."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
import torch.nn as nn
import transformers
from cli_support import extract, write_images
from conftest import tiny_bert, tiny_cnn

import skfungi._engine.extractor
from skfungi import FungiTransformer, ImageBackbone
from skfungi._engine import bank_cache
from skfungi._utils.progress import progress_listener
from skfungi.backbones.huggingface import HuggingFaceTextBackbone
from skfungi.losses import KLLoss, SimCLRLoss

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IMAGES = np.random.default_rng(0).integers(0, 256, (10, 20, 20, 3), dtype=np.uint8)
# lower-case first: the first bank sample reads the same with a lower-casing and a cased tokenizer
TEXTS = ["the cat sat on the mat", "The Dog ran Fast", "a Big red Bird sings", "The Quiet tree"]


@pytest.fixture
def folder(tmp_path) -> Path:
    return tmp_path / "memory"


@pytest.fixture
def encoded_samples(monkeypatch) -> list[int]:
    """Number of samples handed to the bank encoder, per call."""
    calls = []
    original = skfungi._engine.extractor.ExtractionRun.view_embeddings

    def counting(self, block, samples, *args, **kwargs):
        calls.append(len(samples))
        return original(self, block, samples, *args, **kwargs)

    monkeypatch.setattr(skfungi._engine.extractor.ExtractionRun, "view_embeddings", counting)
    return calls


def transformer(module=None, memory=None, random_state=0, latent_dim=8, **settings) -> FungiTransformer:
    backbone = ImageBackbone(module if module is not None else tiny_cnn(), layer="pointwise", input_size=16)
    simclr = SimCLRLoss(grid_size=2, n_negatives=4, latent_dim=latent_dim)
    settings = {"batch_size": 4, **settings}
    return FungiTransformer(backbone, losses=(KLLoss(), simclr), random_state=random_state, memory=memory, **settings)


def negatives(fungi: FungiTransformer) -> torch.Tensor:
    return fungi.losses_[-1].negatives_


def banks(folder: Path) -> list[Path]:
    return sorted((folder / "negative-banks").glob("simclr-*.bank"))


def assert_fresh(cached: FungiTransformer, fresh: FungiTransformer, samples) -> None:
    """The cached fit's bank and features are those of the same fit without a cache, bit for bit."""
    assert torch.equal(negatives(cached), negatives(fresh))
    np.testing.assert_array_equal(cached.transform(samples), fresh.transform(samples))


# -- opt-in, and the same numbers ------------------------------------------------------------------


def test_the_default_stores_nothing_anywhere(tmp_path, monkeypatch, encoded_samples):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SKFUNGI_CACHE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    fungi = transformer()
    assert fungi.memory is None
    fungi.fit(IMAGES)
    transformer().fit(IMAGES)
    assert encoded_samples == [4, 4] and not any(tmp_path.iterdir())


def test_a_cached_fit_gives_the_features_of_an_uncached_fit_bit_for_bit(folder, encoded_samples, caplog):
    with caplog.at_level(logging.INFO, logger="skfungi"):
        stored = transformer(memory=folder).fit(IMAGES)
        assert "encoded and stored in" in caplog.text
        read = transformer(tiny_cnn(), memory=folder).fit(IMAGES)  # another module object, same weights
        assert f"read from {banks(folder)[0]}" in caplog.text
    # first fit: the bank, then its first sample alone (stored for the check); second fit: that check only
    assert encoded_samples == [4, 1, 1] and len(banks(folder)) == 1
    fresh = transformer().fit(IMAGES)
    assert_fresh(stored, fresh, IMAGES[:3])
    assert_fresh(read, fresh, IMAGES[:3])


@pytest.mark.parametrize("kind", ["str", "path", "joblib"])
def test_memory_is_a_folder_or_a_joblib_memory(kind, folder):
    memory = {"str": str(folder), "path": folder, "joblib": joblib.Memory(folder, verbose=0)}[kind]
    transformer(memory=memory).fit(IMAGES)
    assert len(banks(folder)) == 1


def test_a_joblib_memory_without_location_stores_nothing(tmp_path, monkeypatch, encoded_samples):
    monkeypatch.chdir(tmp_path)
    transformer(memory=joblib.Memory(None)).fit(IMAGES)
    assert encoded_samples == [4] and not any(tmp_path.iterdir())


def test_memory_of_another_type_is_refused():
    with pytest.raises(ValueError, match="'memory' parameter of FungiTransformer"):
        transformer(memory=3).fit(IMAGES)


# -- every input of the encoding is in the key -----------------------------------------------------


class ShiftedCNN(nn.Module):
    """The tiny CNN whose inputs above 1 (bright pixels, once normalised) are shifted by a plain attribute."""

    def __init__(self):
        super().__init__()
        self.net = tiny_cnn()
        self.shift = 0.0

    def forward(self, x):
        return self.net(x + self.shift * (x > 1.0))


def test_a_plain_module_attribute_that_spares_the_first_bank_sample_changes_the_key(folder):
    """Audit: a module attribute changed the embeddings of some bank images, not of the first; the old key
    did not see it and its first-sample check passed (features off by 1.5)."""
    images = IMAGES[:4].copy()
    images[0] = 0  # a black first bank image: nothing above 1 once normalised, so the shift never touches it

    def fitted(shift, memory):
        module = ShiftedCNN()
        module.shift = shift
        backbone = ImageBackbone(module, layer="net.pointwise", input_size=16)
        simclr = SimCLRLoss(grid_size=2, n_negatives=4, latent_dim=8)
        return FungiTransformer(backbone, losses=(simclr,), random_state=0, batch_size=4, memory=memory).fit(images)

    fitted(0.0, folder)
    cached, fresh = fitted(0.5, folder), fitted(0.5, None)
    assert len(banks(folder)) == 2
    assert_fresh(cached, fresh, images)


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_a_bank_of_another_precision_is_not_reused(precision, folder):
    """Audit: a bank stored by a half-precision fit was read by a float32 fit (features off by 0.03 to 0.12)."""
    transformer(memory=folder, precision=precision).fit(IMAGES)
    cached, fresh = transformer(memory=folder).fit(IMAGES), transformer().fit(IMAGES)
    assert len(banks(folder)) == 2
    assert_fresh(cached, fresh, IMAGES[:3])


def test_a_bank_of_another_thread_count_is_not_reused(folder):
    """Audit: a bank stored at 2 torch threads was read at 1 (features 1e-7 away from a fresh run at 1):
    the cache must keep "same inputs, parameters and thread count give the same features, bit for bit"."""
    torch.set_num_threads(2)
    try:  # num_threads=None: torch's count (the default runs these tiny forwards at one thread)
        transformer(memory=folder, num_threads=None).fit(IMAGES)
    finally:
        torch.set_num_threads(1)
    cached, fresh = transformer(memory=folder, num_threads=None).fit(IMAGES), transformer(num_threads=None).fit(IMAGES)
    assert len(banks(folder)) == 2
    assert_fresh(cached, fresh, IMAGES[:3])


def text_transformer(backbone, memory=None) -> FungiTransformer:
    simclr = SimCLRLoss(n_views=2, n_negatives=4, latent_dim=8)
    return FungiTransformer(backbone, losses=(simclr,), random_state=0, batch_size=4, memory=memory)


def test_a_tokenizer_given_as_an_object_is_in_the_key(bert_dir, folder):
    """Audit: the same weights with a cased tokenizer instead of a lower-casing one read the lower-casing
    fit's bank (features off by 0.25 to 0.40)."""
    lower = transformers.AutoTokenizer.from_pretrained(bert_dir, local_files_only=True)
    cased = transformers.AutoTokenizer.from_pretrained(bert_dir, local_files_only=True, do_lower_case=False)
    assert lower.tokenize("The") != cased.tokenize("The")
    text_transformer(HuggingFaceTextBackbone(tiny_bert(), tokenizer=lower), folder).fit(TEXTS)
    cached = text_transformer(HuggingFaceTextBackbone(tiny_bert(), tokenizer=cased), folder).fit(TEXTS)
    fresh = text_transformer(HuggingFaceTextBackbone(tiny_bert(), tokenizer=cased)).fit(TEXTS)
    assert len(banks(folder)) == 2
    assert_fresh(cached, fresh, TEXTS)


def test_a_tokenizer_replaced_in_an_hf_folder_is_in_the_key(bert_dir, tmp_path, folder):
    """Audit: the same, the tokenizer's settings replaced inside an ``hf:`` folder between two fits."""
    model = shutil.copytree(bert_dir, tmp_path / "model")
    first = text_transformer(f"hf:{model}", folder).fit(TEXTS)
    config = model / "tokenizer_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "do_lower_case": False}))
    cached, fresh = text_transformer(f"hf:{model}", folder).fit(TEXTS), text_transformer(f"hf:{model}").fit(TEXTS)
    assert len(banks(folder)) == 2 and not torch.equal(negatives(first), negatives(fresh))
    assert_fresh(cached, fresh, TEXTS)


@pytest.mark.parametrize("change", ["seed", "weights", "latent_dim", "samples", "batch_size", "embed", "interpolation"])
def test_whatever_the_latents_depend_on_changes_the_key(change, folder, encoded_samples):
    transformer(memory=folder).fit(IMAGES)
    module = tiny_cnn()
    if change == "weights":
        with torch.no_grad():
            module.stem.weight[0, 0, 0, 0] += 1e-3
    other = transformer(
        module,
        memory=folder,
        random_state=1 if change == "seed" else 0,
        latent_dim=16 if change == "latent_dim" else 8,
        batch_size=2 if change == "batch_size" else 4,
    )
    if change in ("embed", "interpolation"):
        settings = {"embed": lambda net, x: net(x) * 2} if change == "embed" else {"interpolation": "bicubic"}
        other.set_params(backbone=ImageBackbone(module, layer="pointwise", input_size=16, **settings))
    other.fit(IMAGES[::-1].copy() if change == "samples" else IMAGES)
    assert encoded_samples == [4, 1, 4, 1] and len(banks(folder)) == 2


def test_a_backbone_that_cannot_be_digested_is_encoded_and_not_stored(folder, encoded_samples, caplog):
    module = tiny_cnn()
    module.lock = threading.Lock()
    with caplog.at_level(logging.INFO, logger="skfungi"):
        cached = transformer(module, memory=folder).fit(IMAGES)
    assert "cannot be digested" in caplog.text and "lock" in caplog.text
    assert encoded_samples == [4] and not banks(folder)
    assert torch.equal(negatives(cached), negatives(transformer().fit(IMAGES)))


def test_the_key_is_the_same_in_another_process(folder, tmp_path):
    """Another process (other string hashing: PYTHONHASHSEED) reads the bank this one stored. (It is told
    this process's digest of skfungi's source files, which a developer may be editing meanwhile.)"""
    transformer(memory=folder).fit(IMAGES)
    np.save(tmp_path / "images.npy", IMAGES)
    script = f"""
import logging, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import numpy as np, torch
torch.set_num_threads(1)
from skfungi._engine import bank_cache
bank_cache._skfungi_code = lambda: {bank_cache._skfungi_code()!r}
from test_bank_cache import transformer
logging.basicConfig(level=logging.INFO, format="%(message)s")
transformer(memory={str(folder)!r}).fit(np.load({str(tmp_path / "images.npy")!r}))
"""
    environment = {**os.environ, "PYTHONHASHSEED": "12345", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment)
    assert result.returncode == 0, result.stderr
    assert f"read from {banks(folder)[0]}" in result.stderr and len(banks(folder)) == 1


# -- the file is verified ------------------------------------------------------------------------------


def damaged(path: Path, bank: torch.Tensor, how: str) -> None:
    """``path`` with the bank's rows after its first sample's zeroed or NaN, or cut in half."""
    content = path.read_bytes()
    if how == "truncated":
        path.write_bytes(content[: len(content) // 2])
        return
    after_first = bank.numpy()[len(bank) // 4 :]  # 4 bank samples
    start = content.find(after_first.tobytes())
    assert start > 0
    replacement = np.zeros_like(after_first) if how == "zeroed" else np.full_like(after_first, np.nan)
    path.write_bytes(content[:start] + replacement.tobytes() + content[start + after_first.nbytes :])


@pytest.mark.parametrize("how", ["zeroed", "nan", "truncated"])
def test_a_damaged_file_is_named_and_replaced(how, folder, encoded_samples, caplog):
    """Audit: rows zeroed after the first sample were used without a word (features off by 0.48); NaN
    rows gave an error blaming "the backbone or a loss"."""
    expected = negatives(transformer(memory=folder).fit(IMAGES))
    (path,) = banks(folder)
    damaged(path, expected, how)
    with caplog.at_level(logging.WARNING, logger="skfungi"):
        again = transformer(memory=folder).fit(IMAGES)
    assert f"the stored negative bank {path} is damaged" in caplog.text
    assert torch.equal(negatives(again), expected)
    transformer(memory=folder).fit(IMAGES)  # the replaced file is read
    assert encoded_samples == [4, 1, 4, 1, 1]


def test_a_bank_whose_first_sample_no_longer_encodes_the_same_is_encoded_again(
    folder, encoded_samples, caplog, monkeypatch
):
    """What no key sees (here: a library function the module calls, patched in memory) fails the exact
    check of the first sample encoded alone: the bank is encoded again and replaced."""
    transformer(memory=folder).fit(IMAGES)
    relu = torch.relu
    monkeypatch.setattr(torch, "relu", lambda x: relu(x) + 1.0)
    with caplog.at_level(logging.WARNING, logger="skfungi"):
        again = transformer(memory=folder).fit(IMAGES)
    assert "does not match a fresh encoding of its first sample" in caplog.text
    assert encoded_samples == [4, 1, 1, 4, 1]
    assert torch.equal(negatives(again), negatives(transformer().fit(IMAGES)))


# -- progress --------------------------------------------------------------------------------------------


def test_progress_counts_the_bank_once_whether_encoded_or_read(folder):
    """Issue 25: a bank read from the cache left the fit's bar at 1 of its samples."""
    for fit in ("encoded", "read"):
        reports = []
        with progress_listener(lambda stage, n_samples, reports=reports: reports.append((stage, n_samples))):
            transformer(memory=folder).fit(IMAGES)
        assert sum(n for stage, n in reports if stage == "fit") == 4, fit


def test_verbose_shows_no_partial_bar_when_the_bank_is_read(folder, capsys):
    transformer(memory=folder, verbose=1).fit(IMAGES)
    assert "4/4" in capsys.readouterr().err
    transformer(memory=folder, verbose=1).fit(IMAGES)
    assert "encoding simclr views" not in capsys.readouterr().err


def test_the_command_line_stores_the_bank_with_bank_cache(tmp_path):
    write_images(tmp_path / "images", {"": 4})
    outputs = [tmp_path / "first.npy", tmp_path / "second.npy"]
    for output in outputs:
        options = ("--losses", "simclr", "--views", "fast", "--bank-cache", tmp_path / "banks")
        assert extract(tmp_path / "images", output, *options) == 0
    assert len(banks(tmp_path / "banks")) == 1
    np.testing.assert_array_equal(np.load(outputs[0]), np.load(outputs[1]))


def test_user_cache_folder_of_the_demo(monkeypatch, tmp_path):
    monkeypatch.delenv("SKFUNGI_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert bank_cache.user_cache_folder() == tmp_path / "xdg" / "skfungi"
    monkeypatch.setenv("SKFUNGI_CACHE_DIR", str(tmp_path / "mine"))
    assert bank_cache.user_cache_folder() == tmp_path / "mine"
    monkeypatch.setenv("SKFUNGI_CACHE_DIR", "OFF")
    assert bank_cache.user_cache_folder() is None
