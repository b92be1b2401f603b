"""A disk cache of negative banks' latents, shared by transformers, processes and command-line runs.

Encoding a SimCLR negative bank is the slow part of ``fit`` (the paper's
256 images x 49 patches are 12,544 forwards), and the same bank comes back
whenever the same backbone, loss settings, seed and training samples do: in
a grid search over other parameters, in a second process, in the next
``skfungi extract`` run. Its latents are stored under a key that digests
everything they depend on:

- the backbone: the module's class, architecture (its printout) and every
  parameter and buffer (a digest of their values), the adapter's class and
  its plain settings (input size and the like);
- the loss: its class, ``get_params()`` and resolved settings (latent width,
  views per negative);
- the estimator's seed, the device type and the dtype of the latents;
- the bank's samples, by their content keys (the seeds of their views);
- the skfungi version.

The target layer is not part of it: the bank is encoded without gradient,
so the layer never enters. A stored bank is used only after a check: the
first bank sample is encoded again and its latents must match the stored
ones (within ``1e-3`` on unit vectors); a change the key cannot see (the
module's code, a preprocessing option) fails the check and the bank is
encoded again and stored anew. Under half precision (``precision=
"bfloat16"``), where rounding depends on the batch, the check may fail and
the bank is then always encoded.

Location: ``$SKFUNGI_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/skfungi``
(``~/.cache/skfungi``), in the ``negative-banks`` folder; one ``.npy`` file per
bank (about 10 MB for the paper's image bank). ``SKFUNGI_CACHE_DIR=off``
disables it; deleting the folder clears it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["bank_key", "cache_folder", "cached_bank", "module_digest"]

logger = logging.getLogger("skfungi")

ENVIRONMENT_VARIABLE = "SKFUNGI_CACHE_DIR"
FOLDER = "negative-banks"
CHECK_TOLERANCE = 1e-3
_PLAIN = (bool, int, float, str, type(None))


def cache_folder() -> Path | None:
    """The folder of stored banks, or None when ``SKFUNGI_CACHE_DIR=off``."""
    configured = os.environ.get(ENVIRONMENT_VARIABLE, "")
    if configured.lower() == "off":
        return None
    if configured:
        return Path(configured).expanduser() / FOLDER
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "skfungi" / FOLDER


def module_digest(module: torch.nn.Module) -> str:
    """Digest of a module's class, architecture and the values of all its parameters and buffers."""
    hasher = hashlib.blake2b(digest_size=16)
    hasher.update(f"{type(module).__module__}.{type(module).__qualname__}\n{module!r}".encode())
    for name, tensor in module.state_dict(keep_vars=False).items():
        values = tensor.detach().to("cpu").contiguous()
        hasher.update(f"{name}:{values.dtype}:{tuple(values.shape)}".encode())
        hasher.update(values.reshape(-1).view(torch.uint8).numpy().tobytes())  # raw bytes: bfloat16 too
    return hasher.hexdigest()


def bank_key(loss, context, samples: Sequence) -> str:
    """The digest naming a bank's file (see the module docstring for what it covers)."""
    from .. import __version__

    backbone = context.backbone
    settings = {
        "skfungi": __version__,
        "module": module_digest(backbone.module),
        "adapter": f"{type(backbone).__module__}.{type(backbone).__qualname__}",
        "adapter_settings": _plain_settings(vars(backbone)),
        "loss": f"{type(loss).__module__}.{type(loss).__qualname__}",
        "loss_params": _plain_settings(loss.get_params(deep=False)),
        "resolved": _plain_settings({name: value for name, value in vars(loss).items() if name.endswith("_")}),
        "seed": int(context.seed),
        "device": torch.device(context.device).type,
        "dtype": str(context.dtype),
    }
    hasher = hashlib.blake2b(json.dumps(settings, sort_keys=True).encode(), digest_size=20)
    for sample in samples:
        hasher.update(len(sample.key).to_bytes(8, "little"))
        hasher.update(sample.key)
    return hasher.hexdigest()


def cached_bank(loss, context, samples: Sequence, encode: Callable[[Sequence], torch.Tensor]) -> torch.Tensor:
    """``encode(samples)``: the bank's latents, rows sample-major, read from the cache when a
    checked copy is stored there (see the module docstring), else computed and stored.

    ``samples`` are the bank's :class:`~skfungi._core.extractor.KeyedSample`; ``loss`` and
    ``context`` (its :class:`~skfungi.losses.LossContext`) give the rest of the key.
    """
    folder = cache_folder()
    if folder is None or not samples:
        return encode(samples)
    path = folder / f"{loss.name}-{bank_key(loss, context, samples)}.npy"
    stored = _read(path)
    if stored is not None:
        first = encode(samples[:1])
        stored = torch.from_numpy(stored).to(device=first.device, dtype=first.dtype)
        if stored.shape == (len(samples) * len(first), *first.shape[1:]) and torch.allclose(
            stored[: len(first)], first, rtol=0, atol=CHECK_TOLERANCE
        ):
            logger.info("negative bank read from %s", path)
            return stored
        logger.info("stored negative bank %s does not match a fresh encoding of its first sample: encoding it", path)
    latents = encode(samples)
    _write(path, latents.detach().to("cpu").numpy())
    return latents


def _plain_settings(settings: dict) -> dict:
    """The settings whose values are plain (numbers, strings, tuples of them), as JSON-ready values."""
    plain = {}
    for name, value in settings.items():
        if isinstance(value, _PLAIN):
            plain[name] = value
        elif isinstance(value, tuple | list) and all(isinstance(item, _PLAIN) for item in value):
            plain[name] = list(value)
    return plain


def _read(path: Path) -> np.ndarray | None:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:  # a truncated or foreign file: encode again and replace it
        logger.warning("ignoring unreadable cached negative bank %s (%s)", path, error)
        return None


def _write(path: Path, array: np.ndarray) -> None:
    """Store atomically (a reader never sees half a file); a cache that cannot be written is skipped."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
            temporary = handle.name
            np.save(handle, array, allow_pickle=False)
        os.replace(temporary, path)
    except OSError as error:
        logger.warning("could not store the negative bank in %s (%s)", path, error)
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
