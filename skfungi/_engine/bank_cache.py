"""An opt-in disk cache of SimCLR negative banks, used only when it holds what encoding them again would give.

Encoding a SimCLR negative bank is the slow part of ``fit`` (the paper's
256 images x 49 patches are 12,544 forwards), and the same bank comes back
whenever the same inputs do: in a grid search over other parameters, in a
second process, in the next ``skfungi extract`` run. With
``FungiTransformer(memory=folder)`` its latents are stored in
``<folder>/negative-banks/``, one file per bank, under a key that digests
every input of the encoding:

- the backbone adapter with its module, whole (:func:`content_digest`):
  parameters, buffers, plain attributes, submodules and hooks, the callables
  it holds (``embed``, ``preprocess``, pooling; by code for a script's or a
  notebook's, by package version for an installed package's), a tokenizer
  with its vocabulary and options;
- the loss, whole: its class, parameters, resolved settings and head;
- how the bank is encoded: the seed, the precision (autocast dtype), the
  batch size (forwards group views by it, and batched kernels round
  differently with their batch) and the losses' dtype;
- where: the device (for CUDA its name, CUDA and cuDNN versions, TF32 and
  cuDNN settings), the CPU model, its instruction flags, torch's CPU
  capability and thread count (float32 kernels round differently with them);
- the software: Python, torch and numpy versions, skfungi's version and a
  digest of its source files;
- the bank's samples, by their content keys (the seeds of their views).

A bank whose inputs cannot all be digested (a module compiled by
``torch.compile``, an attribute holding a lock) is encoded and not stored,
with an INFO message saying why.

The file holds the latents and the first bank sample encoded alone, behind a
BLAKE2b checksum of both and of the key. Reading verifies the checksum: a
damaged, truncated or foreign file is named in a WARNING, then the bank is
encoded again and the file replaced (atomically, so a reader never sees
half a file).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import platform
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._utils.content_digest import UnhashableError, content_digest
from .._utils.progress import report_progress

__all__ = ["BankEncoding", "bank_folder", "bank_key", "cached_bank", "user_cache_folder"]

logger = logging.getLogger("skfungi")

FOLDER = "negative-banks"
FILE_HEADER = b"skfungi negative bank 2\n"
CHECKSUM_SIZE = 32


def bank_folder(memory) -> Path | None:
    """The folder of stored banks for ``FungiTransformer(memory=...)``: None (no cache), a folder, or a
    ``joblib.Memory`` (its ``location``; none for ``Memory(None)``)."""
    location = getattr(memory, "location", memory)
    return None if location is None else Path(location).expanduser() / FOLDER


def user_cache_folder() -> Path | None:
    """The demo's bank cache: ``$SKFUNGI_CACHE_DIR`` (``off``: none), else ``$XDG_CACHE_HOME/skfungi``
    or ``~/.cache/skfungi``. The library itself never reads the environment: its cache is ``memory``."""
    configured = os.environ.get("SKFUNGI_CACHE_DIR", "")
    if configured.lower() == "off":
        return None
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "skfungi"


@dataclass(frozen=True)
class BankEncoding:
    """How a negative bank is encoded, besides the loss and the samples: part of its key.

    Attributes
    ----------
    backbone : Backbone
        The adapter, with its module.
    seed : int
    precision : str
        The autocast dtype of the backbone's forwards.
    batch_size : int
        The most views in one forward.
    dtype, device
        The losses' dtype, and where the bank is encoded.
    folder : Path or None
        Where banks are stored (the estimator's ``memory``); None: never stored.
    """

    backbone: object
    seed: int
    precision: str
    batch_size: int
    dtype: torch.dtype
    device: torch.device
    folder: Path | None


def cached_bank(encoding: BankEncoding, loss, samples: Sequence, encode: Callable[..., torch.Tensor]) -> torch.Tensor:
    """``encode(samples)``: the bank's latents, rows sample-major, read from ``encoding.folder`` when a
    verified copy is stored there (see the module docstring), else computed (and stored there).

    ``samples`` are the bank's :class:`~skfungi._engine.samples.KeyedSample`; ``loss`` and
    ``encoding`` give the rest of the key. ``encode(samples, report=False)`` encodes without
    reporting progress or refusing non-finite embeddings (to encode a sample again).
    """
    folder = encoding.folder
    if folder is None or not samples:
        return encode(samples)
    try:
        key = bank_key(encoding, loss, samples)
    except UnhashableError as reason:
        logger.info(
            "%s's negative bank is encoded and not stored: its inputs cannot be digested (%s)", loss.name, reason
        )
        return encode(samples)
    path = folder / f"{loss.name}-{key}.bank"
    stored = _read(path, key)
    if stored is not None:
        latents, first_alone = stored
        # The key covers every input skfungi can see; this check covers what no key can: the process's
        # environment (a library function patched in memory, a global forward hook, variables such as
        # OMP_* or ONEDNN_* that choose kernels). It can be exact because what changes rounding (threads,
        # CPU, precision, batch size) is in the key. It compares the first sample encoded *alone*, then and
        # now, never the bank's rows: their forwards also hold views of the next samples, which batched
        # kernels may round differently. It costs one sample's views per read and one per write.
        again = encode(samples[:1], report=False)
        if _fits(latents, again, len(samples)) and torch.equal(torch.from_numpy(first_alone), again.cpu()):
            logger.info("%s's negative bank of %d samples read from %s", loss.name, len(samples), path)
            report_progress("fit", len(samples))
            return torch.from_numpy(latents).to(again.device)
        logger.warning(
            "the stored negative bank %s does not match a fresh encoding of its first sample (something the key "
            "cannot see changed, such as a library function patched in memory): encoding it again",
            path,
        )
    latents = encode(samples)
    first_alone = encode(samples[:1], report=False)
    _write(path, key, latents.detach().cpu().numpy(), first_alone.detach().cpu().numpy())
    logger.info("%s's negative bank of %d samples encoded and stored in %s", loss.name, len(samples), path)
    return latents


def bank_key(encoding: BankEncoding, loss, samples: Sequence) -> str:
    """The digest naming a bank's file (see the module docstring for what it covers).

    Raises :class:`~skfungi._utils.content_digest.UnhashableError` when the backbone adapter or the
    loss holds something that cannot be digested.
    """
    hasher = hashlib.blake2b(json.dumps(_settings(encoding), sort_keys=True).encode(), digest_size=20)
    hasher.update(content_digest(encoding.backbone))
    hasher.update(content_digest((type(loss), {k: v for k, v in vars(loss).items() if k != "negatives_"})))
    for sample in samples:
        hasher.update(len(sample.key).to_bytes(8, "little"))
        hasher.update(sample.key)
    return hasher.hexdigest()


def _settings(encoding: BankEncoding) -> dict:
    """How and where the bank is encoded, and by which software."""
    return {
        "seed": int(encoding.seed),
        "precision": encoding.precision,
        "batch_size": int(encoding.batch_size),
        "dtype": str(encoding.dtype),
        "device": _device_description(torch.device(encoding.device)),
        "cpu": _cpu_description(),
        "software": {
            "python": sys.version,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "skfungi": _skfungi_code(),
        },
    }


def _device_description(device: torch.device) -> dict:
    description = {
        "type": device.type,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
    if device.type == "cuda":
        description |= {
            "name": torch.cuda.get_device_name(device),
            "capability": list(torch.cuda.get_device_capability(device)),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_tf32": torch.backends.cudnn.allow_tf32,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
        }
    elif device.type == "mps":
        description["macos"] = platform.mac_ver()[0]
    return description


def _cpu_description() -> dict:
    """The CPU as its kernels see it (views are built on it whatever the device)."""
    model, flags = _cpu_model()
    return {
        "model": model,
        "flags": flags,
        "machine": platform.machine(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }


@functools.cache
def _cpu_model() -> tuple[str, str]:
    """The CPU's model name and a digest of its instruction flags (``/proc/cpuinfo``; elsewhere the
    processor ``platform`` reports)."""
    fields = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                name, _, value = line.partition(":")
                fields.setdefault(name.strip(), value.strip())
    except OSError:
        pass
    model = fields.get("model name") or fields.get("Model") or platform.processor()
    flags = fields.get("flags") or fields.get("Features") or ""
    return model, hashlib.blake2b(flags.encode(), digest_size=8).hexdigest()


@functools.cache
def _skfungi_code() -> str:
    """skfungi's version and a digest of its source files (a development checkout changes without a new
    version)."""
    from .._version import __version__

    package = Path(__file__).resolve().parent.parent
    hasher = hashlib.blake2b(digest_size=16)
    for path in sorted(package.rglob("*.py")):
        hasher.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return f"{__version__} {hasher.hexdigest()}"


def _fits(latents: np.ndarray, first_alone: torch.Tensor, n_samples: int) -> bool:
    """Whether stored latents have the shape, dtype and finiteness of a bank of ``n_samples`` samples."""
    rows = n_samples * first_alone.shape[0]
    return (
        latents.shape == (rows, *first_alone.shape[1:])
        and str(latents.dtype) == str(first_alone.dtype).removeprefix("torch.")
        and bool(np.isfinite(latents).all())
    )


def _checksum(key: str, payload: bytes) -> bytes:
    return hashlib.blake2b(key.encode() + b"\0" + payload, digest_size=CHECKSUM_SIZE).digest()


def _read(path: Path, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The stored latents and first sample's latents, or None (missing, or damaged: with a warning)."""
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        logger.warning("cannot read the stored negative bank %s (%s): encoding it again", path, error)
        return None
    start = len(FILE_HEADER) + CHECKSUM_SIZE
    checksum, payload = content[len(FILE_HEADER) : start], content[start:]
    if not content.startswith(FILE_HEADER) or checksum != _checksum(key, payload):
        logger.warning(
            "the stored negative bank %s is damaged (truncated, altered or not a bank of this key: its checksum "
            "does not match): encoding the bank again and replacing the file",
            path,
        )
        return None
    with np.load(io.BytesIO(payload), allow_pickle=False) as arrays:
        return arrays["latents"], arrays["first_sample_alone"]


def _write(path: Path, key: str, latents: np.ndarray, first_alone: np.ndarray) -> None:
    """Store atomically (a reader never sees half a file); a cache that cannot be written is skipped."""
    buffer = io.BytesIO()
    np.savez(buffer, latents=latents, first_sample_alone=first_alone)
    payload = buffer.getvalue()
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
            temporary = handle.name
            handle.write(FILE_HEADER + _checksum(key, payload) + payload)
        os.replace(temporary, path)
    except OSError as error:
        logger.warning("could not store the negative bank in %s (%s)", path, error)
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
