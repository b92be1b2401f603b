"""Resolve what a user passes as ``backbone`` (and ``modality``) into an adapter.

- an adapter (:class:`Backbone` subclass) is used as is;
- a string ``"<family>:<name>"`` is built by its family: ``timm``,
  ``open_clip`` (image tower, or text tower with ``modality="text"``),
  ``hf`` (a local Hugging Face text encoder) and ``resemblyzer``
  (``"resemblyzer:pretrained"`` or a local weights file) and ``skfungi``
  (the offline pretrained models, ``"skfungi:mobilenet_v2"``);
- a module of a known family (timm, open_clip, Hugging Face, Resemblyzer) gets that
  family's adapter; any other ``nn.Module`` gets the generic adapter of the
  modality, which is ``modality`` or, with ``"auto"``, inferred from ``X``.
"""

from __future__ import annotations

import importlib

import numpy as np
import torch
import torch.nn as nn

from ..inputs.columns import column_values, is_missing
from ._base import Backbone

__all__ = ["MODALITIES", "declared_modality", "infer_modality", "resolve_backbone"]

MODALITIES = ("image", "text", "audio", "tabular")

# family -> (module, builder); builders take (model or name, modality) and import lazily
_FAMILIES = {
    "timm": ("skfungi.backbones.timm", "timm_backbone"),
    "open_clip": ("skfungi.backbones.open_clip", "open_clip_backbone"),
    "hf": ("skfungi.backbones.huggingface", "huggingface_backbone"),
    "resemblyzer": ("skfungi.backbones.resemblyzer", "resemblyzer_backbone"),
    "skfungi": ("skfungi.backbones.mobilenet", "skfungi_backbone"),
}
_GENERIC = {
    "image": ("skfungi.backbones.image", "ImageBackbone"),
    "audio": ("skfungi.backbones.audio", "AudioBackbone"),
    "tabular": ("skfungi.backbones.tabular", "TabularBackbone"),
}


def _load(target):
    module, name = target
    return getattr(importlib.import_module(module), name)


def _module_family(module: nn.Module) -> str | None:
    origin = type(module).__module__.split(".")[0]
    if origin == "timm":
        return "timm"
    if origin == "open_clip":
        return "open_clip"
    if origin == "transformers":
        return "hf"
    if origin == "resemblyzer":
        return "resemblyzer"
    return None


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


def resolve_backbone(backbone, modality: str = "auto", X=None) -> Backbone:
    """Return the adapter for ``backbone`` in ``modality`` (``"auto"``: the adapter's own, or inferred from ``X``)."""
    if modality != "auto" and modality not in MODALITIES:
        raise ValueError(f"modality must be 'auto' or one of {MODALITIES}, got {modality!r}.")
    if isinstance(backbone, Backbone):
        adapter = backbone
    elif isinstance(backbone, str):
        family, sep, name = backbone.partition(":")
        if not sep or family not in _FAMILIES or not name:
            raise ValueError(
                f"backbone spec {backbone!r} is not understood; use '<family>:<name>' with family "
                f"in {sorted(_FAMILIES)}, e.g. 'timm:vit_small_patch16_224'."
            )
        adapter = _load(_FAMILIES[family])(name, modality)
    elif isinstance(backbone, nn.Module):
        family = _module_family(backbone)
        if family is not None:
            adapter = _load(_FAMILIES[family])(backbone, modality)
        else:
            chosen = infer_modality(X) if modality == "auto" else modality
            if chosen == "text":
                raise ValueError(
                    "a text backbone needs its tokenizer: pass 'hf:<local path>', an open_clip model with "
                    "modality='text', or skfungi.backbones.TextBackbone(module, tokenizer=...)."
                )
            adapter = _load(_GENERIC[chosen])(backbone)
    else:
        raise TypeError(
            "backbone must be a torch.nn.Module, a string spec such as 'timm:vit_small_patch16_224', "
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
    family = backbone.partition(":")[0] if isinstance(backbone, str) else None
    if isinstance(backbone, nn.Module):
        family = _module_family(backbone)
    return {"timm": "image", "open_clip": "image", "hf": "text", "resemblyzer": "audio", "skfungi": "image"}.get(family)
