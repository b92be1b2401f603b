"""Extracted blocks, in memory and on disk: :class:`Block`, :class:`BlockStore`, and what identifies them.

A block's features depend on the samples, the fit samples, the backbone, the
seed and the block's own loss; a gradient block also on the target layer and
the projection. The store's key for a block holds exactly these, so the
embedding and the no-gradient view blocks, which no projection touches, are
found again when only the projection changes, and an evaluation that was
interrupted, or is extended with another loss, extracts only what is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Block", "BlockStore", "backbone_identity", "block_key", "sample_digest"]


@dataclass
class Block:
    """One block's features on every sample, and what they cost to compute.

    Attributes
    ----------
    name : str
        ``"embedding"``, a loss name (``"kl"``, ...) or a view block (``"dino_views"``, ...).
    features : ndarray of shape (n_samples, width)
    fit_seconds : float
        Time of ``fit`` (drawing heads, encoding SimCLR's negative bank).
    seconds_per_sample : float
        Time of ``transform`` per sample.
    stored : bool
        Read from a :class:`BlockStore` rather than extracted in this run (its
        times are those of the run that extracted it).
    key : str
        The block's key in the store ("" when not stored).
    """

    name: str
    features: np.ndarray
    fit_seconds: float
    seconds_per_sample: float
    stored: bool = False
    key: str = ""

    @property
    def width(self) -> int:
        return int(self.features.shape[1])


def sample_digest(samples: Iterable) -> str:
    """A short SHA-256 of the samples' values, in order (arrays, texts, ``(waveform, rate)`` pairs, paths).

    Examples
    --------
    >>> sample_digest(["a text", "another"]) == sample_digest(["a text", "another"])
    True
    >>> sample_digest(["a text", "another"]) == sample_digest(["another", "a text"])
    False
    """
    digest = hashlib.sha256()
    if isinstance(samples, np.ndarray) and samples.dtype != object:
        digest.update(f"{samples.dtype.str}{samples.shape}".encode())
        digest.update(np.ascontiguousarray(samples).tobytes())
        return digest.hexdigest()[:16]
    for sample in samples:
        _update(digest, sample)
    return digest.hexdigest()[:16]


def _update(digest, sample) -> None:
    if isinstance(sample, str):
        digest.update(b"s" + sample.encode("utf-8") + b"\0")
    elif isinstance(sample, os.PathLike):
        path = Path(sample)
        stat = path.stat()
        digest.update(f"p{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\0".encode())
    elif isinstance(sample, tuple):
        digest.update(b"t")
        for item in sample:
            _update(digest, item)
    elif hasattr(sample, "detach"):  # a torch tensor
        _update(digest, sample.detach().cpu().numpy())
    elif hasattr(sample, "tobytes") and hasattr(sample, "mode"):  # a PIL image
        digest.update(f"i{sample.mode}{sample.size}".encode() + sample.tobytes())
    elif isinstance(sample, (np.ndarray, np.generic, int, float)):
        array = np.asarray(sample)
        digest.update(f"a{array.dtype.str}{array.shape}".encode() + np.ascontiguousarray(array).tobytes())
    else:
        digest.update(b"o" + pickle.dumps(sample, protocol=4))


def backbone_identity(backbone, spec: str | None = None) -> dict:
    """What identifies a backbone for the store: its spec string, adapter class, input size, weights' digest.

    Parameters
    ----------
    backbone : str, nn.Module or backbone adapter
    spec : str or None
        The spec string the adapter was built from, when it was.
    """
    if isinstance(backbone, str):
        return {"spec": backbone}
    module = getattr(backbone, "module", backbone)
    identity = {"spec": spec, "adapter": type(backbone).__name__, "module": type(module).__name__}
    for attribute in ("input_size", "max_length", "sample_rate"):
        value = getattr(backbone, attribute, None)
        if isinstance(value, (int, float, str)):
            identity[attribute] = value
    state = getattr(module, "state_dict", None)
    if state is not None:
        import torch

        digest = hashlib.sha256()
        for name, tensor in state().items():
            values = tensor.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
            digest.update(values.view(torch.uint8).numpy().tobytes())
        identity["weights"] = digest.hexdigest()[:16]
    return identity


def block_key(settings: Mapping) -> str:
    """The first 16 hex digits of the SHA-256 of ``settings`` as sorted JSON."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class BlockStore:
    """A folder of extracted blocks: ``<name>-<key>.npz`` beside ``<name>-<key>.json`` (its settings).

    Parameters
    ----------
    folder : str or path
        Created when the first block is saved.

    Examples
    --------
    >>> import tempfile
    >>> store = BlockStore(tempfile.mkdtemp())
    >>> store.save(Block("embedding", np.ones((2, 3), np.float32), 0.5, 0.01), {"seed": 0})
    >>> store.load("embedding", {"seed": 0}).features.shape, store.load("embedding", {"seed": 1})
    ((2, 3), None)
    """

    def __init__(self, folder):
        self.folder = Path(folder)

    def _path(self, name: str, key: str, suffix: str) -> Path:
        return self.folder / f"{name}-{key}{suffix}"

    def contains(self, name: str, settings: Mapping) -> bool:
        """Whether a block is stored with exactly these ``settings``."""
        return self._path(name, block_key(settings), ".npz").is_file()

    def load(self, name: str, settings: Mapping) -> Block | None:
        """The block stored with exactly these ``settings``, or None."""
        key = block_key(settings)
        path = self._path(name, key, ".npz")
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                return Block(
                    name,
                    stored["features"],
                    float(stored["fit_seconds"]),
                    float(stored["seconds_per_sample"]),
                    stored=True,
                    key=key,
                )
        except (OSError, ValueError, KeyError):  # a damaged file is extracted again
            return None

    def save(self, block: Block, settings: Mapping) -> None:
        """Store ``block`` under its ``settings`` (written under a temporary name, then renamed)."""
        key = block_key(settings)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(block.name, key, ".npz")
        temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(
            temporary,
            features=block.features,
            fit_seconds=block.fit_seconds,
            seconds_per_sample=block.seconds_per_sample,
        )
        os.replace(temporary, path)
        description = json.dumps({"block": block.name, "key": key, "settings": settings}, indent=1, default=str)
        self._path(block.name, key, ".json").write_text(description + "\n")
        block.key = key
