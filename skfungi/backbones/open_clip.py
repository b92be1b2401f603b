"""open_clip models: the image tower and the text tower, by name or by instance.

Both adapters keep the WHOLE CLIP model as their module (so the user's model
stays intact and pickles whole) and embed through ``encode_image`` /
``encode_text``, unnormalised. Their default target layer is the last
residual block's ``attn.out_proj``, which ``nn.MultiheadAttention`` applies
functionally: skfungi captures its true per-sample gradient (see
``skfungi._core.gradients``). The image tower pools its class token and the text
tower its end-of-text token, so only that token carries gradient there.
"""

from __future__ import annotations

import functools
import inspect
import os
import re

import torch
import torch.nn as nn

from .image import ImageBackbone
from .text import TextBackbone

__all__ = [
    "OpenCLIPImageBackbone",
    "OpenCLIPTextBackbone",
    "is_open_clip_model",
    "open_clip_backbone",
    "open_clip_image_embedding",
    "open_clip_text_embedding",
]

# open_clip's default BPE tokenizer (SimpleTokenizer) has this many tokens.
_SIMPLE_TOKENIZER_VOCAB = 49408


def is_open_clip_model(module: nn.Module) -> bool:
    """True for open_clip models (defined in open_clip, with ``encode_image`` and ``encode_text``)."""
    return (
        type(module).__module__.startswith("open_clip.")
        and hasattr(module, "encode_image")
        and hasattr(module, "encode_text")
    )


def open_clip_image_embedding(module: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The image tower's embedding: ``model.encode_image(inputs)`` (unnormalised)."""
    return module.encode_image(inputs)


def open_clip_text_embedding(module: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The text tower's embedding: ``model.encode_text(tokens)`` (unnormalised)."""
    return module.encode_text(tokens)


def _create(name: str, pretrained: str | os.PathLike | None) -> nn.Module:
    """``open_clip.create_model(name)`` with random weights or a local weights file; never downloads."""
    import open_clip

    if name.startswith("hf-hub:"):
        raise ValueError(f"{name!r} would be downloaded from the Hugging Face Hub; skfungi never downloads.")
    if pretrained is not None:
        pretrained = os.fspath(pretrained)
        if not os.path.isfile(pretrained):
            raise FileNotFoundError(
                f"open_clip weights file not found: {pretrained!r}. skfungi never downloads (pretrained tags "
                "such as 'openai' are not accepted); pass pretrained=None for random weights or a local file."
            )
    if not name.startswith("local-dir:") and name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {name!r}; open_clip.list_models() lists the known names.")
    # no tower-level pretrained weights either (they would be downloaded)
    accepted = inspect.signature(open_clip.create_model).parameters
    towers = {flag: False for flag in ("pretrained_image", "pretrained_text") if flag in accepted}
    return open_clip.create_model(name, pretrained=pretrained, **towers)


def _model_and_name(model, pretrained) -> tuple[nn.Module, str | None]:
    if isinstance(model, str):
        return _create(model, pretrained), model
    if pretrained is not None:
        raise ValueError("pretrained applies to a model name; load weights into your instance yourself.")
    if not isinstance(model, nn.Module) or not is_open_clip_model(model):
        raise TypeError(
            f"model must be an open_clip model name or an open_clip model (with encode_image and encode_text), "
            f"got {type(model).__name__}."
        )
    return model, None


def _last_out_proj(model: nn.Module, prefix: str) -> str | None:
    """``<prefix>transformer.resblocks.<last>.attn.out_proj`` when the tower has one."""
    pattern = re.escape(prefix) + r"transformer\.resblocks\.(\d+)\.attn\.out_proj"
    found = [
        (int(match.group(1)), path)
        for path, layer in model.named_modules()
        if (match := re.fullmatch(pattern, path)) and isinstance(layer, nn.Linear)
    ]
    return max(found)[1] if found else None


class OpenCLIPImageBackbone(ImageBackbone):
    """The image tower of an open_clip model.

    Parameters
    ----------
    model : str or torch.nn.Module
        An open_clip model name (``open_clip.create_model(name)``, see
        ``open_clip.list_models()``) or a model instance. The whole CLIP
        model is kept; the embedding is ``model.encode_image(x)``.
    pretrained : str or os.PathLike, optional
        For a name: ``None`` for random weights or the path of a local
        weights file. Nothing is downloaded (tags such as ``"openai"`` are
        refused).
    layer : str, optional
        Target layer; default ``visual.transformer.resblocks.<last>.attn.out_proj``.

    Notes
    -----
    Input size, mean and std come from the model's preprocessing config
    (``visual.preprocess_cfg``, else ``visual.image_size`` with
    ``visual.image_mean`` / ``image_std``, else the OpenAI statistics). Views
    are resized with skfungi's own (bilinear) resize, not open_clip's bicubic
    transform. open_clip's vision transformers have position embeddings for
    one grid only, so every view is forwarded at the input size
    (``flexible_size=False``): cheaper view presets such as ``views="fast"``
    save through fewer views there, not through smaller ones.

    Examples
    --------
    >>> from open_clip.model import CLIP
    >>> from skfungi.backbones.open_clip import OpenCLIPImageBackbone
    >>> clip = CLIP(embed_dim=16, vision_cfg=dict(image_size=32, patch_size=8, width=32, layers=2, head_width=16),
    ...             text_cfg=dict(context_length=16, width=32, heads=2, layers=2))
    >>> backbone = OpenCLIPImageBackbone(clip)
    >>> backbone.default_layer, backbone.input_size
    ('visual.transformer.resblocks.1.attn.out_proj', 32)
    """

    def __init__(self, model, *, pretrained: str | os.PathLike | None = None, layer: str | None = None):
        import open_clip

        model, _ = _model_and_name(model, pretrained)
        visual = model.visual
        config = getattr(visual, "preprocess_cfg", None) or {}
        size = config.get("size", getattr(visual, "image_size", 224))
        size = (size, size) if isinstance(size, int) else tuple(size)
        if size[0] != size[-1]:
            raise ValueError(f"skfungi feeds square views; this open_clip model expects {size[0]}x{size[-1]} images.")
        mean = config.get("mean") or getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
        std = config.get("std") or getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
        super().__init__(
            model,
            layer=layer or _last_out_proj(model, "visual."),
            embed=open_clip_image_embedding,
            input_size=int(size[-1]),
            mean=tuple(mean),
            std=tuple(std),
            flexible_size=False,
        )


class OpenCLIPTextBackbone(TextBackbone):
    """The text tower of an open_clip model.

    Parameters
    ----------
    model : str or torch.nn.Module
        An open_clip model name or instance. The whole CLIP model is kept;
        the embedding is ``model.encode_text(tokens)`` (for the standard
        text tower: the end-of-text token's final state, projected).
    pretrained : str or os.PathLike, optional
        For a name: ``None`` for random weights or a local weights file.
    tokenizer : callable, optional
        ``tokenizer(texts) -> (N, context_length)`` token ids. Default:
        ``open_clip.get_tokenizer(name)`` for a name (it ships with open_clip,
        so works offline for the CLIP models); for an instance, open_clip's
        ``SimpleTokenizer`` at the model's context length when the model has
        its vocabulary size, else ``tokenizer`` is required.
    layer : str, optional
        Target layer; default ``transformer.resblocks.<last>.attn.out_proj``.

    Notes
    -----
    Texts are tokenised to the model's fixed context length (77 for the
    CLIP models); longer texts are truncated, keeping the end-of-text token.
    An empty text is ``<start_of_text> <end_of_text>``.

    Examples
    --------
    >>> from open_clip.model import CLIP
    >>> from skfungi.backbones.open_clip import OpenCLIPTextBackbone
    >>> clip = CLIP(embed_dim=16, vision_cfg=dict(image_size=32, patch_size=8, width=32, layers=2, head_width=16),
    ...             text_cfg=dict(context_length=16, width=32, heads=2, layers=2))
    >>> backbone = OpenCLIPTextBackbone(clip)
    >>> backbone.default_layer
    'transformer.resblocks.1.attn.out_proj'
    >>> backbone.encode(["a photo of a cat", ""]).shape
    torch.Size([2, 16])
    """

    def __init__(self, model, *, pretrained: str | os.PathLike | None = None, tokenizer=None, layer: str | None = None):
        model, name = _model_and_name(model, pretrained)
        if tokenizer is None:
            tokenizer = _default_tokenizer(model, name)
        context_length = getattr(model, "context_length", None)
        tokenizer_length = getattr(tokenizer, "context_length", None)
        if isinstance(context_length, int) and isinstance(tokenizer_length, int) and context_length != tokenizer_length:
            raise ValueError(
                f"the tokenizer pads to {tokenizer_length} tokens but the model's context length is {context_length}."
            )
        prefix = "text." if isinstance(getattr(model, "text", None), nn.Module) else ""
        super().__init__(model, tokenizer, layer=layer or _last_out_proj(model, prefix), embed=open_clip_text_embedding)
        self.context_length = context_length


def _default_tokenizer(model: nn.Module, name: str | None):
    import open_clip

    if name is not None:
        try:
            return open_clip.get_tokenizer(name)
        except Exception as error:  # open_clip raises many kinds (network, missing files)
            raise RuntimeError(
                f"cannot build open_clip's tokenizer for {name!r} offline ({type(error).__name__}: {error}); "
                "pass OpenCLIPTextBackbone(..., tokenizer=...)."
            ) from error
    vocab_size = getattr(model, "vocab_size", None)
    context_length = getattr(model, "context_length", None)
    if vocab_size != _SIMPLE_TOKENIZER_VOCAB or not isinstance(context_length, int):
        raise ValueError(
            f"cannot tell which tokenizer this {type(model).__name__} uses (vocab_size={vocab_size!r}); pass "
            "OpenCLIPTextBackbone(model, tokenizer=open_clip.get_tokenizer('<its model name>'))."
        )
    return _simple_tokenizer(context_length)


@functools.lru_cache(maxsize=4)
def _simple_tokenizer(context_length: int):
    """open_clip's BPE tokenizer (building it reads the vocabulary: shared between adapters)."""
    import open_clip

    return open_clip.tokenizer.SimpleTokenizer(context_length=context_length)


def open_clip_backbone(
    model, modality: str = "auto", *, pretrained: str | os.PathLike | None = None
) -> OpenCLIPImageBackbone | OpenCLIPTextBackbone:
    """Registry entry for ``"open_clip:<name>"`` specs and open_clip instances.

    ``modality`` ``"auto"`` or ``"image"`` gives the image tower, ``"text"``
    the text tower.
    """
    if modality in ("auto", "image"):
        return OpenCLIPImageBackbone(model, pretrained=pretrained)
    if modality == "text":
        return OpenCLIPTextBackbone(model, pretrained=pretrained)
    raise ValueError(f"open_clip models have an image and a text tower; modality={modality!r} is not possible.")
