"""Resolve what a user passes as ``backbone`` (and ``modality``) into an adapter.

- an adapter (:class:`Backbone` subclass) is used as is;
- a string ``"<family>:<name>"`` is built by its family (:data:`FAMILIES`):
  ``timm``, ``open_clip`` (image tower, or text tower with ``modality="text"``),
  ``hf`` (a Hugging Face text encoder: hub id or local directory),
  ``sentence_transformers``, ``resemblyzer`` (``"resemblyzer:pretrained"`` or
  a local weights file) and ``skfungi`` (the offline pretrained models,
  ``"skfungi:mobilenet_v2"``). Names load pretrained weights; families that
  can also give random weights take ``"?pretrained=false"`` (or
  ``"?pretrained=<local weights file>"``) after the name;
- a module of a known family (its class, or a base class, defined in the
  family's package) gets that family's adapter; any other ``nn.Module`` gets
  the generic adapter of the modality, which is ``modality`` or, with
  ``"auto"``, inferred from ``X``.
"""

from __future__ import annotations

import importlib
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from .._utils.quiet import muted
from ..inputs.columns import column_values, is_missing
from ._base import Backbone

__all__ = [
    "FAMILIES",
    "MODALITIES",
    "Family",
    "declared_modality",
    "infer_modality",
    "module_family",
    "resolve_backbone",
]

MODALITIES = ("image", "text", "audio", "tabular")


@dataclass(frozen=True)
class Family:
    """A backbone family: where its builder lives, its modalities, and how its modules are recognised.

    Attributes
    ----------
    builder : str
        ``"module:function"``, imported when first used; the function takes
        ``(name or module, modality, **options)`` and returns an adapter.
    modalities : tuple of str
        Modalities its models serve; the first is the default.
    package : str or None
        Top-level package defining its model classes (None: specs only).
    random_weights : bool
        Whether its specs take ``"?pretrained=false"`` / ``"?pretrained=<file>"``.
    libraries : tuple of str
        Libraries whose logs and progress bars are muted while a spec loads
        (see ``skfungi._utils.quiet``), unless ``verbose > 0``.
    """

    builder: str
    modalities: tuple[str, ...]
    package: str | None = None
    random_weights: bool = False
    libraries: tuple[str, ...] = ()


_HUB = ("huggingface_hub", "transformers")  # what a transformers load prints through
# Every family, once. Module detection walks a module's class hierarchy (most derived first), so a
# sentence-transformers model (which wraps a transformers one) is recognised as sentence_transformers.
FAMILIES = {
    "timm": Family(
        "skfungi.backbones.timm:timm_backbone",
        ("image",),
        "timm",
        random_weights=True,
        libraries=("huggingface_hub", "timm"),
    ),
    "open_clip": Family(
        "skfungi.backbones.open_clip:open_clip_backbone",
        ("image", "text"),
        "open_clip",
        random_weights=True,
        libraries=("huggingface_hub", "timm", "open_clip"),
    ),
    "hf": Family(
        "skfungi.backbones.huggingface:huggingface_backbone",
        ("text",),
        "transformers",
        random_weights=True,
        libraries=_HUB,
    ),
    "sentence_transformers": Family(
        "skfungi.backbones.sentence_transformers:sentence_transformers_backbone",
        ("text",),
        "sentence_transformers",
        libraries=(*_HUB, "sentence_transformers"),
    ),
    "resemblyzer": Family("skfungi.backbones.resemblyzer:resemblyzer_backbone", ("audio",), "resemblyzer"),
    "skfungi": Family("skfungi.backbones.mobilenet:skfungi_backbone", ("image",)),
}
_GENERIC = {
    "image": "skfungi.backbones.image:ImageBackbone",
    "audio": "skfungi.backbones.audio:AudioBackbone",
    "tabular": "skfungi.backbones.tabular:TabularBackbone",
}
_PRETRAINED_OPTION = "?pretrained="


def _load(target: str):
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def module_family(module: nn.Module) -> str | None:
    """The family of a module: the first class of its hierarchy defined in a family's package, or None."""
    packages = {family.package: name for name, family in FAMILIES.items() if family.package}
    for cls in type(module).__mro__:
        family = packages.get(cls.__module__.split(".")[0])
        if family is not None:
            return family
    return None


def _family_modality(name: str, modality: str) -> str:
    modalities = FAMILIES[name].modalities
    if modality == "auto":
        return modalities[0]
    if modality not in modalities:
        served = " and ".join(modalities)
        raise ValueError(f"'{name}' backbones serve {served}; modality={modality!r} is not possible.")
    return modality


def _split_options(spec: str, family: str, name: str) -> tuple[str, dict]:
    """``"<name>?pretrained=<false | true | path>"`` -> ``(name, {"pretrained": value})``."""
    base, marker, value = name.rpartition(_PRETRAINED_OPTION)
    if not marker:
        return name, {}
    if not FAMILIES[family].random_weights:
        raise ValueError(f"'{family}' backbones take no '{_PRETRAINED_OPTION}' option (in {spec!r}).")
    if not base or not value:
        raise ValueError(
            f"backbone spec {spec!r}: write '{family}:<name>{_PRETRAINED_OPTION}<false | true | local weights file>'."
        )
    lowered = value.lower()
    return base, {"pretrained": lowered == "true" if lowered in ("true", "false") else value}


@contextmanager
def _seeded(seed: int | None):
    """Torch's CPU generator seeded with ``seed`` inside the block (its state restored afterwards)."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def infer_modality(X) -> str:
    """Guess the modality of raw inputs: text, tabular rows, audio waveforms or images.

    A non-numeric column (a Series, a one-column DataFrame of objects, an
    object array of shape ``(n, 1)``) is judged by its values, as a list is.
    """
    values = column_values(X)
    if values is not None:
        X = [value for value in values if not is_missing(value)]
    if hasattr(X, "dtype") and hasattr(X, "ndim") and not isinstance(X, torch.Tensor):
        array = np.asarray(X) if not isinstance(X, np.ndarray) else X
        if array.dtype.kind in "OUS" and array.ndim == 1:
            return "text"
        if array.ndim == 2:
            return "tabular"
        return "image"
    if hasattr(X, "iloc") or hasattr(X, "columns"):  # pandas Series / DataFrame
        return "tabular" if hasattr(X, "columns") else "text"
    if isinstance(X, (list, tuple)) and X:
        first = X[0]
        if isinstance(first, str):
            return "text"
        if isinstance(first, tuple) and len(first) == 2:  # (waveform, sample_rate)
            first = first[0]
        if isinstance(first, (np.ndarray, torch.Tensor)) and first.ndim == 1:
            return "audio"
    return "image"


def resolve_backbone(backbone, modality: str = "auto", X=None, seed: int | None = None, verbose: int = 0) -> Backbone:
    """Return the adapter for ``backbone`` in ``modality`` (``"auto"``: the adapter's own, or inferred from ``X``).

    ``seed`` seeds whatever a spec string builds at random (``"?pretrained=false"``,
    a transformers pooler that a checkpoint lacks); without it, torch's global
    generator is used. With ``verbose=0`` the model
    libraries print nothing while a spec loads (their logs and progress bars
    are muted for the load, then restored); ``verbose > 0`` lets them print.
    """
    if modality != "auto" and modality not in MODALITIES:
        raise ValueError(f"modality must be 'auto' or one of {MODALITIES}, got {modality!r}.")
    if isinstance(backbone, Backbone):
        adapter = backbone
    elif isinstance(backbone, str):
        family, sep, name = backbone.partition(":")
        if not sep or family not in FAMILIES or not name:
            raise ValueError(
                f"backbone spec {backbone!r} is not understood; use '<family>:<name>' with family "
                f"in {sorted(FAMILIES)}, e.g. 'timm:vit_base_patch16_224.dino'."
            )
        name, options = _split_options(backbone, family, name)
        with _seeded(seed), muted(() if verbose > 0 else FAMILIES[family].libraries):
            adapter = _load(FAMILIES[family].builder)(name, _family_modality(family, modality), **options)
    elif isinstance(backbone, nn.Module):
        family = module_family(backbone)
        if family is not None:
            adapter = _load(FAMILIES[family].builder)(backbone, _family_modality(family, modality))
        else:
            chosen = infer_modality(X) if modality == "auto" else modality
            if chosen == "text":
                raise ValueError(
                    "a text backbone needs its tokenizer: pass 'hf:<hub id or local path>', a sentence-transformers "
                    "model, an open_clip model with modality='text', or "
                    "skfungi.backbones.TextBackbone(module, tokenizer=...)."
                )
            adapter = _load(_GENERIC[chosen])(backbone)
    else:
        raise TypeError(
            "backbone must be a torch.nn.Module, a string spec such as 'timm:vit_base_patch16_224.dino', "
            f"or a backbone adapter; got {type(backbone).__name__}."
        )
    if modality not in ("auto", adapter.modality):
        raise ValueError(f"modality={modality!r} does not match the backbone, whose modality is {adapter.modality!r}.")
    return adapter


def declared_modality(backbone, modality: str = "auto") -> str | None:
    """The modality known before any data is seen (for estimator tags), or None."""
    if modality != "auto":
        return modality
    if isinstance(backbone, Backbone):
        return backbone.modality
    family = None
    if isinstance(backbone, str):
        family = backbone.partition(":")[0]
    elif isinstance(backbone, nn.Module):
        family = module_family(backbone)
    return FAMILIES[family].modalities[0] if family in FAMILIES else None
