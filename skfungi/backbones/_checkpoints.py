"""Pretrained weights loaded strictly: every weight of the model comes from the file, or loading fails.

Lenient loading is how a random model passes for a pretrained one. timm loads
its checkpoints with ``strict=False`` whenever a spec drops the classifier
(``num_classes=0``), so a checkpoint of another architecture, one that lacks a
block, or an empty file leaves those weights random behind an INFO log;
transformers re-initialises whatever a checkpoint lacks. Here, what a library
is about to load is compared with the model it built (:class:`KeyReport`), and
:func:`check` refuses:

- a weight of the model that the file lacks (missing), except in modules the
  family says the embedding never reads (the ``pooler`` of a transformers
  encoder: skfungi pools the token states itself);
- a weight whose shape differs (mismatched);
- a key of the file that falls inside a module where the model holds weights
  (unexpected). Only keys where the built model holds no weights pass, when the
  spec builds the model without the checkpoint's head: the classifier that
  ``num_classes=0`` replaced by an identity (``head.weight``), or a task head
  that ``AutoModel`` leaves out (``cls.predictions.bias``).

The error names the file and counts each kind, with the first keys. A prefix
common to every key of the file (``backbone.`` of a Lightning module,
``module.`` of DistributedDataParallel) is never stripped here: the error
names it with the line that saves the backbone's own weights, since a wrapper's
prefix may hold other modules than the backbone. The libraries keep their own
handling (timm and open_clip unwrap ``{"state_dict": ...}`` and drop
``module.``).

A library that loads inside its own code (timm's ``load_pretrained``, after
the model's checkpoint filter; open_clip's ``load_checkpoint``, after its
format conversions) is checked through :func:`checked_loads`: for the block,
and for calls from this thread only, that function registers a
``load_state_dict`` pre-hook on the model it loads into, so the check sees
exactly the state dict the library hands to the model. (The libraries' own
``.npz`` readers assign weights without ``load_state_dict``; they look up
every weight of the model by name, failing on a missing one.) transformers
reports its load itself (``huggingface.checked_transformers_loads``). Files
skfungi reads itself (:func:`read_state_dict`) are named in every reading
error.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn

__all__ = ["CheckpointError", "KeyReport", "check", "checked_loads", "load_strictly", "read_state_dict", "replaced"]

logger = logging.getLogger(__name__)

# keys quoted per kind in an error
_SHOWN = 5
# one library function replaced at a time, whichever thread asks
_REPLACING = threading.RLock()


class CheckpointError(ValueError):
    """Weights that exist but cannot be used: an unreadable file, or one that does not fit the model."""


@dataclass(frozen=True)
class KeyReport:
    """How a state dict fits a model: its missing, unexpected and mismatched keys.

    ``mismatched`` holds ``(key, shape in the file, shape in the model)``.
    """

    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[tuple[str, tuple, tuple], ...] = ()

    @classmethod
    def compare(cls, model: nn.Module, state: Mapping[str, object]) -> KeyReport:
        """The report of loading ``state`` into ``model`` (as ``model.load_state_dict`` would see it)."""
        expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
        given = {key: tuple(getattr(value, "shape", ())) for key, value in state.items()}
        return cls(
            missing=tuple(key for key in expected if key not in given),
            unexpected=tuple(key for key in given if key not in expected),
            mismatched=tuple(
                (key, given[key], shape) for key, shape in expected.items() if key in given and given[key] != shape
            ),
        )


def check(
    report: KeyReport, model: nn.Module, source: str, *, head_removed: bool = False, unused: tuple[str, ...] = ()
) -> None:
    """Raise :class:`CheckpointError` unless every weight of ``model`` is loaded from ``source``, shape for shape.

    ``head_removed``: the spec builds the model without the checkpoint's head,
    so keys where the model holds no weights are ignored. ``unused``: module
    paths whose weights may be missing because the embedding never reads them.
    """
    missing = [key for key in report.missing if not key.startswith(tuple(f"{path}." for path in unused))]
    head = _outside_weights(model, report.unexpected) if head_removed else set()
    if missing or len(head) < len(report.unexpected) or report.mismatched:
        raise CheckpointError(_mismatch_message(report, missing, model, source))
    if len(missing) < len(report.missing):
        logger.info("%s has no weights for %s, which the embedding never reads.", source, ", ".join(unused))
    if head:
        logger.info("ignored %d keys of %s outside the model's weights (its head).", len(head), source)


def _outside_weights(model: nn.Module, keys: tuple[str, ...]) -> set[str]:
    """The keys whose deepest module in ``model`` (the model itself excepted) holds no weights, or that have none."""
    if not keys:
        return set()
    holds_weights = {
        path: any(True for _ in module.state_dict(keep_vars=True)) for path, module in model.named_modules() if path
    }
    outside = set()
    for key in keys:
        parts = key.split(".")[:-1]
        paths = (".".join(parts[:depth]) for depth in range(len(parts), 0, -1))
        if not next((holds_weights[path] for path in paths if path in holds_weights), False):
            outside.add(key)
    return outside


def _mismatch_message(report: KeyReport, missing: list[str], model: nn.Module, source: str) -> str:
    weights = len(model.state_dict())
    parts = []
    if missing:
        parts.append(f"{len(missing)} of the model's {weights} weights are not in the file ({_first(missing)})")
    if report.unexpected:
        parts.append(f"{len(report.unexpected)} keys of the file are not in the model ({_first(report.unexpected)})")
    if report.mismatched:
        shapes = [f"{key}: {file} in the file, {own} in the model" for key, file, own in report.mismatched]
        parts.append(f"{len(shapes)} weights have another shape ({_first(shapes)})")
    return (
        f"the weights in {source} do not fit the {type(model).__name__} being built: {'; '.join(parts)}. "
        "skfungi loads pretrained weights only when every weight of the model comes from the file, with its shape: "
        f"check that the file holds this model's weights (same architecture and variant).{_prefix_hint(report)}"
    )


def _first(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown if len(items) <= _SHOWN else f"{shown}, ... and {len(items) - _SHOWN} more"


def _prefix_hint(report: KeyReport) -> str:
    """A hint when every unexpected key starts with one prefix whose removal gives the model's keys."""
    if not report.unexpected or not report.missing:
        return ""
    prefix = report.unexpected[0].split(".")[0] + "."
    if not all(key.startswith(prefix) for key in report.unexpected):
        return ""
    if not set(report.missing) & {key.removeprefix(prefix) for key in report.unexpected}:
        return ""
    return (
        f" Every key of the file starts with {prefix!r}, which the model's keys do not (weights saved from a "
        f"wrapper: a Lightning module, DistributedDataParallel...). skfungi does not strip prefixes; save the "
        f"backbone's own weights: {{key.removeprefix({prefix!r}): value for key, value in state_dict.items()}}."
    )


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:300]}" if lines else type(error).__name__


def read_state_dict(path: str | os.PathLike) -> object:
    """The object saved in a weights file: ``safetensors`` for ``.safetensors``, else ``torch.load(weights_only=True)``.

    Any reading error becomes a :class:`CheckpointError` naming the file (a
    missing file stays a ``FileNotFoundError``).
    """
    path = os.fspath(path)
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(path, device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # safetensors, pickle, zip and torch each raise their own kinds
        raise CheckpointError(f"cannot read the weights file {path} ({_first_line(error)}).") from error


def load_strictly(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    """``model.load_state_dict(state, strict=True)`` after :func:`check` (whose error names ``source``)."""
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{source} holds a {type(state).__name__}, not a state dict of tensors.")
    check(KeyReport.compare(model, state), model, source)
    model.load_state_dict(state, strict=True)
    return model


@contextmanager
def replaced(owner: object, name: str, wrap: Callable[[Callable], Callable]) -> Iterator[None]:
    """``owner.<name>`` is ``wrap(original)`` inside the block for calls from this thread, then restored.

    ``owner`` is a module or a class (a classmethod is wrapped as its
    function, ``cls`` first). Other threads keep calling the original.
    """
    with _REPLACING:  # read the original only once no other block has replaced it
        original = vars(owner)[name]
        is_classmethod = isinstance(original, classmethod)
        function = original.__func__ if is_classmethod else original
        wrapped = wrap(function)
        thread = threading.get_ident()

        def dispatch(*args, **kwargs):
            return (wrapped if threading.get_ident() == thread else function)(*args, **kwargs)

        setattr(owner, name, classmethod(dispatch) if is_classmethod else dispatch)
        try:
            yield
        finally:
            setattr(owner, name, original)


@contextmanager
def checked_loads(
    owner: object, name: str, source: Callable[[Mapping[str, object]], str], *, head_removed: bool = False
) -> Iterator[None]:
    """Check every state dict that ``owner.<name>(model, ...)``, a library's loading function, loads into ``model``.

    ``source(arguments)`` names the weights from the function's bound
    arguments. An error the function raises before the state dict reaches the
    model (a damaged file, a format its converters reject) becomes a
    :class:`CheckpointError` naming them; an ``OSError`` (weights not found,
    no network) passes through, for the caller's ``WeightsNotFoundError``.
    """

    def wrap(load: Callable) -> Callable:
        signature = inspect.signature(load)

        def checked_load(model: nn.Module, *args, **kwargs):
            where = source(signature.bind(model, *args, **kwargs).arguments)
            reached = []

            def check_state(module, state_dict, prefix, *_):
                if prefix == "":
                    reached.append(True)
                    check(KeyReport.compare(module, state_dict), module, where, head_removed=head_removed)

            handle = model.register_load_state_dict_pre_hook(check_state)
            try:
                return load(model, *args, **kwargs)
            except (CheckpointError, OSError):
                raise
            except Exception as error:  # readers and converters raise many kinds
                if reached:
                    raise
                raise CheckpointError(f"cannot use the weights in {where} ({_first_line(error)}).") from error
            finally:
                handle.remove()

        return checked_load

    with replaced(owner, name, wrap):
        yield
