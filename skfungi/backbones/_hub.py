"""Pretrained weights loaded the libraries' own way, failing fast where they cannot be had.

timm, open_clip, transformers and sentence-transformers download weights
through the Hugging Face Hub client (``huggingface_hub``) into its cache,
and read that cache when ``HF_HUB_OFFLINE=1``. Where no network is reachable
and that variable is not set, the client retries each request with back-off
for tens of seconds before it looks in the cache. :func:`hub_access` avoids
that wait: it first sends one HTTP request to the hub (answered, or given up
after a few seconds) and, where none comes back, holds the client in its
offline mode for the library call, so the library reads its cache and fails
at once if the weights are not there. :func:`weights_error` turns such a failure into
one error that names the model, where the library looked and how to load
from a local file instead.
"""

from __future__ import annotations

import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import contextmanager

from ._checkpoints import CheckpointError

__all__ = ["WeightsNotFoundError", "folder_or_hub", "hub_access", "hub_cache_dir", "reachable", "weights_error"]

# seconds one probe may take before the network counts as unreachable
CONNECT_TIMEOUT = 5.0


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights that are neither in a local cache nor downloadable now."""


def hub_cache_dir() -> str:
    """The Hugging Face Hub cache the libraries read (``HF_HUB_CACHE``, ``HF_HOME``/hub by default)."""
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def reachable(url: str, timeout: float = CONNECT_TIMEOUT) -> bool:
    """Whether an HTTP ``HEAD`` request to ``url`` gets an answer within ``timeout`` seconds.

    Any answer counts (an error status, a certificate the local trust store
    rejects): the library then decides. The request goes through the proxies
    of the environment (``HTTPS_PROXY``...), as the Hub client's do.
    """
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except urllib.error.URLError as error:
        return isinstance(error.reason, ssl.SSLError)
    except (OSError, ValueError):  # a timeout while reading, a malformed URL
        return False


@contextmanager
def hub_access(url: str | None = None):
    """Run a library's loading code with the Hub client offline where no network can be used.

    Offline means ``HF_HUB_OFFLINE`` is set, or the host of ``url`` (default:
    the Hub's endpoint, ``HF_ENDPOINT``) cannot be reached. Yields why the
    block runs offline (None when it runs online); the client's setting is
    restored afterwards.
    """
    from huggingface_hub import constants

    url = url or constants.ENDPOINT
    if constants.HF_HUB_OFFLINE:
        reason = "HF_HUB_OFFLINE is set"
    else:
        reason = None if reachable(url) else f"{url} cannot be reached"
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = reason is not None
    try:
        yield reason
    finally:
        constants.HF_HUB_OFFLINE = saved


def weights_error(
    model: str, looked_in: str, local_hint: str, offline_reason: str | None, error: Exception
) -> WeightsNotFoundError:
    """The error for weights that could not be loaded, naming the model, the cache and the local-file way."""
    reason = f"offline ({offline_reason}) and not in the local cache" if offline_reason else "the download failed"
    return WeightsNotFoundError(
        f"cannot load the pretrained weights of {model}: {reason}. Looked in {looked_in}. "
        f"({type(error).__name__}: {str(error).strip()[:500]}) To load them without a network, download them "
        f"once where one is reachable (the same call fills the cache), or point at local files: {local_hint}."
    )


def folder_or_hub(name: str, load: Callable[[], object], model: str, family: str):
    """``load()`` for a local folder ``name``, or for a Hub id through :func:`hub_access` with a named error.

    ``model`` names the kind of model in messages (``"Hugging Face model"``);
    ``family`` is the spec prefix of the local-folder alternative.
    """
    if os.path.isdir(name):
        return load()
    if os.path.isabs(name) or name.startswith((".", "~")):
        raise FileNotFoundError(f"{model} directory not found: {name!r}.")
    looked_in = f"the Hugging Face Hub cache {hub_cache_dir()} (repository {name!r}; it is not a local directory)"
    local_hint = f"'{family}:/path/to/model_dir' (e.g. from `hf download {name} --local-dir /path/to/model_dir`)"
    with hub_access() as offline:
        try:
            return load()
        except CheckpointError:  # found, but unusable: not a matter of the network
            raise
        except (OSError, ValueError, RuntimeError) as error:
            raise weights_error(f"{model} {name!r}", looked_in, local_hint, offline, error) from error
