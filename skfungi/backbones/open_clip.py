"""open_clip models: the image tower and the text tower, by name or by instance.

A spec name is created the way open_clip creates it,
``open_clip.create_model(arch, pretrained=tag)`` for ``"<arch>/<tag>"`` (see
``open_clip.list_pretrained()``) or ``open_clip.create_model("hf-hub:<repo>")``
/ ``"local-dir:<folder>"``: weights from the Hugging Face Hub cache (downloaded
there where a network is reachable) or a local folder or file; open_clip's
``load_checkpoint`` is checked so that a file that does not fit, or cannot be
read, is refused with its name (``._checkpoints``). Random weights only when
asked for (``pretrained=False``).

Both adapters keep the WHOLE CLIP model as their module (so the user's model
stays intact and pickles whole) and embed through ``encode_image`` /
``encode_text``, unnormalised. Their default target layer is the last
residual block's ``attn.out_proj``, which ``nn.MultiheadAttention`` applies
functionally: skfungi captures its true per-sample gradient (see
``skfungi._engine.gradients``). The image tower pools its class token and the text
tower its end-of-text token, so only that token carries gradient there.
"""

from __future__ import annotations

import functools
import inspect
import os
import re

import torch
import torch.nn as nn

from ._checkpoints import CheckpointError, checked_loads
from ._hub import hub_access, hub_cache_dir, weights_error
from ._registry import module_family
from .image import ImageBackbone
from .text import TextBackbone

__all__ = [
    "OpenCLIPImageBackbone",
    "OpenCLIPTextBackbone",
    "open_clip_backbone",
    "open_clip_image_embedding",
    "open_clip_preprocess_cfg",
    "open_clip_text_embedding",
]

_SCHEMAS = ("hf-hub:", "local-dir:")
# open_clip's inference resize modes that skfungi's square views reproduce
_RESIZE_MODES = ("shortest", "squash")

# open_clip's default BPE tokenizer (SimpleTokenizer) has this many tokens.
_SIMPLE_TOKENIZER_VOCAB = 49408


def open_clip_image_embedding(module: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The image tower's embedding: ``model.encode_image(inputs)`` (unnormalised)."""
    return module.encode_image(inputs)


def open_clip_text_embedding(module: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The text tower's embedding: ``model.encode_text(tokens)`` (unnormalised)."""
    return module.encode_text(tokens)


def _create(name: str, pretrained: bool | str | os.PathLike) -> nn.Module:
    """An open_clip model by spec name: pretrained (a tag, the hub, a local folder or file) or random."""
    import open_clip

    schema = name.startswith(_SCHEMAS)
    arch, _, tag = (name, "", "") if schema else name.partition("/")
    if not schema and arch not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {arch!r}; open_clip.list_models() lists the known names.")
    # never the towers' own base weights (open_clip would fetch them for a model without a checkpoint)
    accepted = inspect.signature(open_clip.create_model).parameters
    options = {flag: False for flag in ("pretrained_image", "pretrained_text") if flag in accepted}
    if pretrained is not True and (schema or tag):
        raise ValueError(
            f"{name!r} names its weights; pretrained=False or a weights file go with an architecture name."
        )
    if pretrained is False:
        return open_clip.create_model(arch, pretrained=None, **options)
    if pretrained is not True:
        path = os.fspath(pretrained)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"open_clip weights file not found: {path!r}")
        return open_clip.create_model(arch, pretrained=path, **options)
    if not schema and not open_clip.is_pretrained_cfg(arch, tag):
        tags = open_clip.list_pretrained_tags_by_model(arch)
        if tag:
            raise ValueError(f"unknown pretrained tag {tag!r} for open_clip model {arch!r}; its tags are {tags}.")
        raise ValueError(
            f"open_clip model {arch!r} needs a pretrained tag: 'open_clip:{arch}/<tag>' with a tag in {tags}; "
            f"or 'open_clip:{arch}?pretrained=<local file>', or 'open_clip:{arch}?pretrained=false' for random weights."
        )
    if name.startswith("local-dir:"):
        return open_clip.create_model(name, require_pretrained=True, **options)
    repository = name.removeprefix("hf-hub:") if schema else open_clip.get_pretrained_cfg(arch, tag).get("hf_hub", "")
    looked_in = f"the Hugging Face Hub cache {hub_cache_dir()} (repository {repository.strip('/')!r})"
    local_hint = (
        f"'open_clip:local-dir:/folder' (a folder holding the repository's open_clip_config.json and weights, "
        f"e.g. from `hf download {repository.strip('/')} --local-dir /folder`)"
    )
    if not schema:
        local_hint = f"'open_clip:{arch}?pretrained=/path/to/open_clip_model.safetensors', or {local_hint}"
    with hub_access() as offline:
        try:
            if schema:
                return open_clip.create_model(name, require_pretrained=True, **options)
            return open_clip.create_model(arch, pretrained=tag, require_pretrained=True, **options)
        except CheckpointError:
            raise
        except (OSError, RuntimeError, ValueError) as error:
            raise weights_error(f"open_clip model {name!r}", looked_in, local_hint, offline, error) from error


def _checked_loads():
    """open_clip's ``load_checkpoint`` checked (see ``._checkpoints``), after its format conversions."""
    from open_clip import factory

    return checked_loads(factory, "load_checkpoint", lambda arguments: str(arguments["checkpoint_path"]))


def _model_and_name(model, pretrained) -> tuple[nn.Module, str | None]:
    if isinstance(model, str):
        tokenizer_name = model if model.startswith(_SCHEMAS) else model.partition("/")[0]
        with _checked_loads():
            return _create(model, pretrained), tokenizer_name
    if pretrained is not True:
        raise ValueError("pretrained applies to a model name; load weights into your instance yourself.")
    if not isinstance(model, nn.Module) or module_family(model) != "open_clip" or not hasattr(model, "encode_text"):
        raise TypeError(
            f"model must be an open_clip model name or an open_clip model (with encode_image and encode_text), "
            f"got {type(model).__name__}."
        )
    return model, None


def open_clip_preprocess_cfg(model: nn.Module, overrides: dict | None = None) -> dict:
    """open_clip's inference preprocessing of ``model`` (``open_clip.get_model_preprocess_cfg``) with
    open_clip's defaults for what it leaves out, then ``overrides`` (keys of ``open_clip.PreprocessCfg``)."""
    import open_clip
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    config = merge_preprocess_dict(PreprocessCfg(), open_clip.get_model_preprocess_cfg(model))
    return merge_preprocess_dict(config, overrides or {})


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
    pretrained : bool, str or os.PathLike, default=True
        For a name: ``True`` loads the weights the name states
        (``"ViT-B-32/laion2b_s34b_b79k"``, ``"hf-hub:<repo>"``,
        ``"local-dir:<folder>"``) the way ``open_clip.create_model`` does,
        from the Hugging Face Hub cache or downloaded into it where a network
        is reachable; the path of a local weights file loads that file into
        an architecture name (``"ViT-B-32"``); ``False`` gives random weights
        for an architecture name.
    layer : str, optional
        Target layer; default ``visual.transformer.resblocks.<last>.attn.out_proj``.
    preprocess_cfg : dict, optional
        Overrides of open_clip's preprocessing settings (keys of
        ``open_clip.PreprocessCfg``: ``interpolation``, ``resize_mode``,
        ``mean``, ``std``).

    Raises
    ------
    WeightsNotFoundError
        Within seconds, when the weights are neither cached nor downloadable.
    CheckpointError
        When the weights file cannot be read or does not fit the model.

    Notes
    -----
    The inference view is open_clip's own inference preprocessing
    (``open_clip.get_model_preprocess_cfg``, as ``create_model_and_transforms``
    builds it): the shorter side resized to the input size with the model's
    interpolation (bicubic for the CLIP models), centre-cropped, normalised
    with its mean and std. open_clip's vision transformers have position
    embeddings for one grid only, so every view is forwarded at the input size
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

    def __init__(
        self,
        model,
        *,
        pretrained: bool | str | os.PathLike = True,
        layer: str | None = None,
        preprocess_cfg: dict | None = None,
    ):
        model, _ = _model_and_name(model, pretrained)
        config = open_clip_preprocess_cfg(model, preprocess_cfg)
        size = config["size"]
        size = (size, size) if isinstance(size, int) else tuple(size)
        if size[0] != size[-1]:
            raise ValueError(f"skfungi feeds square views; this open_clip model expects {size[0]}x{size[-1]} images.")
        if config["resize_mode"] not in _RESIZE_MODES:
            raise ValueError(
                f"open_clip's resize_mode {config['resize_mode']!r} is not supported; pass "
                "preprocess_cfg={'resize_mode': 'shortest'} (or 'squash')."
            )
        super().__init__(
            model,
            layer=layer or _last_out_proj(model, "visual."),
            embed=open_clip_image_embedding,
            input_size=int(size[-1]),
            mean=tuple(config["mean"]),
            std=tuple(config["std"]),
            flexible_size=False,
            # open_clip's rule: bilinear if asked for, bicubic otherwise
            interpolation="bilinear" if config["interpolation"] == "bilinear" else "bicubic",
            resize_mode=config["resize_mode"],
        )


class OpenCLIPTextBackbone(TextBackbone):
    """The text tower of an open_clip model.

    Parameters
    ----------
    model : str or torch.nn.Module
        An open_clip model name or instance. The whole CLIP model is kept;
        the embedding is ``model.encode_text(tokens)`` (for the standard
        text tower: the end-of-text token's final state, projected).
    pretrained : bool, str or os.PathLike, default=True
        As for :class:`OpenCLIPImageBackbone`.
    tokenizer : callable, optional
        ``tokenizer(texts) -> (N, context_length)`` token ids. Default:
        ``open_clip.get_tokenizer(name)`` for a name (the CLIP models' BPE
        tokenizer ships with open_clip; ``"hf-hub:"`` models read theirs from
        the Hugging Face Hub cache); for an instance, open_clip's
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
    >>> backbone.embed(["a photo of a cat", ""]).shape
    torch.Size([2, 16])
    """

    def __init__(self, model, *, pretrained: bool | str | os.PathLike = True, tokenizer=None, layer: str | None = None):
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
        with hub_access():
            try:
                return open_clip.get_tokenizer(name)
            except Exception as error:  # open_clip raises many kinds (network, missing files)
                raise RuntimeError(
                    f"cannot build open_clip's tokenizer for {name!r} ({type(error).__name__}: {error}); "
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
    model, modality: str = "image", pretrained: bool | str | os.PathLike = True
) -> OpenCLIPImageBackbone | OpenCLIPTextBackbone:
    """Registry builder for ``"open_clip:<arch>/<tag>"``, ``"open_clip:hf-hub:<repo>"`` specs and open_clip
    instances: the image tower, or the text tower for ``modality="text"``."""
    tower = OpenCLIPTextBackbone if modality == "text" else OpenCLIPImageBackbone
    return tower(model, pretrained=pretrained)
