"""The disk cache of SimCLR negative banks: reused across transformers and processes, keyed by what
the latents depend on, checked before use, off when asked."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_cnn

import skfungi._core.extractor
from skfungi import FungiTransformer, ImageBackbone
from skfungi._core import bank_cache
from skfungi.losses import KLLoss, SimCLRLoss

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IMAGES = np.random.default_rng(0).integers(0, 256, (10, 20, 20, 3), dtype=np.uint8)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SKFUNGI_CACHE_DIR", str(tmp_path))
    return tmp_path / "negative-banks"


@pytest.fixture
def encoded_samples(monkeypatch) -> list[int]:
    """Number of samples handed to the bank encoder, per call."""
    calls = []
    original = skfungi._core.extractor.FeatureExtractor.encode

    def counting(self, loss, samples, *args, **kwargs):
        calls.append(len(samples))
        return original(self, loss, samples, *args, **kwargs)

    monkeypatch.setattr(skfungi._core.extractor.FeatureExtractor, "encode", counting)
    return calls


def transformer(module=None, random_state=0, latent_dim=8) -> FungiTransformer:
    backbone = ImageBackbone(module if module is not None else tiny_cnn(), layer="pointwise", input_size=16)
    simclr = SimCLRLoss(grid_size=2, n_negatives=4, latent_dim=latent_dim)
    return FungiTransformer(backbone, losses=(KLLoss(), simclr), random_state=random_state, batch_size=4)


def negatives(fungi: FungiTransformer) -> torch.Tensor:
    return fungi.losses_[1].negatives_


def test_a_second_transformer_reads_the_bank_and_checks_one_sample(cache, encoded_samples):
    first = transformer().fit(IMAGES)
    assert encoded_samples == [4] and len(list(cache.glob("simclr-*.npy"))) == 1
    second = transformer(tiny_cnn()).fit(IMAGES)  # another module object with the same weights
    assert encoded_samples == [4, 1]  # only the first bank sample, to check the stored latents
    assert torch.equal(negatives(second), negatives(first))
    np.testing.assert_array_equal(second.transform(IMAGES[:3]), first.transform(IMAGES[:3]))


def test_the_bank_is_the_same_with_and_without_the_cache(cache, monkeypatch):
    stored = negatives(transformer().fit(IMAGES))
    read = negatives(transformer().fit(IMAGES))
    monkeypatch.setenv("SKFUNGI_CACHE_DIR", "off")
    fresh = negatives(transformer().fit(IMAGES))
    assert torch.equal(read, stored) and torch.equal(fresh, stored)


def test_off_disables_the_cache(tmp_path, monkeypatch, encoded_samples):
    monkeypatch.setenv("SKFUNGI_CACHE_DIR", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    transformer().fit(IMAGES)
    transformer().fit(IMAGES)
    assert encoded_samples == [4, 4] and not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "change",
    ["seed", "weights", "latent_dim", "samples"],
)
def test_whatever_the_latents_depend_on_changes_the_key(change, cache, encoded_samples):
    transformer().fit(IMAGES)
    module = tiny_cnn()
    if change == "weights":
        with torch.no_grad():
            module.stem.weight[0, 0, 0, 0] += 1e-3
    other = transformer(
        module, random_state=1 if change == "seed" else 0, latent_dim=16 if change == "latent_dim" else 8
    )
    other.fit(IMAGES[::-1].copy() if change == "samples" else IMAGES)
    assert encoded_samples == [4, 4] and len(list(cache.glob("*.npy"))) == 2


def test_a_stored_bank_that_no_longer_matches_is_encoded_again(cache, encoded_samples, caplog):
    """A change the key cannot see (here: other values in the stored file, as a changed forward
    would give) fails the check on the first sample: the bank is encoded again and replaced."""
    expected = negatives(transformer().fit(IMAGES))
    (path,) = cache.glob("*.npy")
    np.save(path, np.load(path) + 0.01)
    with caplog.at_level(logging.INFO, logger="skfungi"):
        again = negatives(transformer().fit(IMAGES))
    assert encoded_samples == [4, 1, 4] and "does not match" in caplog.text
    assert torch.equal(again, expected)
    np.testing.assert_array_equal(np.load(path), expected.numpy())


def test_an_unreadable_file_is_replaced(cache, encoded_samples, caplog):
    expected = negatives(transformer().fit(IMAGES))
    (path,) = cache.glob("*.npy")
    path.write_bytes(b"not a numpy file")
    with caplog.at_level(logging.WARNING, logger="skfungi"):
        assert torch.equal(negatives(transformer().fit(IMAGES)), expected)
    assert encoded_samples == [4, 4] and "unreadable" in caplog.text
    np.testing.assert_array_equal(np.load(path), expected.numpy())


def test_the_bank_comes_from_its_file_alone(cache, encoded_samples):
    """Nothing is kept in memory between fits: a bank stored by another process (or an earlier
    command-line run) is read the same way, and without its file the bank is encoded again."""
    transformer().fit(IMAGES)
    (path,) = cache.glob("*.npy")
    transformer().fit(IMAGES)
    path.unlink()
    transformer().fit(IMAGES)
    assert encoded_samples == [4, 1, 4] and path.is_file()


def test_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("SKFUNGI_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert bank_cache.cache_folder() == tmp_path / "xdg" / "skfungi" / "negative-banks"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert bank_cache.cache_folder() == Path.home() / ".cache" / "skfungi" / "negative-banks"
    monkeypatch.setenv("SKFUNGI_CACHE_DIR", str(tmp_path / "mine"))
    assert bank_cache.cache_folder() == tmp_path / "mine" / "negative-banks"
    monkeypatch.setenv("SKFUNGI_CACHE_DIR", "OFF")
    assert bank_cache.cache_folder() is None


def test_module_digest_covers_weights_buffers_and_architecture():
    digest = bank_cache.module_digest(tiny_cnn())
    assert digest == bank_cache.module_digest(tiny_cnn())
    changed = tiny_cnn()
    with torch.no_grad():
        changed.norm.running_mean[0] += 1.0  # a buffer
    assert bank_cache.module_digest(changed) != digest
    assert bank_cache.module_digest(tiny_cnn(bias=False)) != digest
