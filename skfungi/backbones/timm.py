"""timm models: by instance or by name (``"timm:vit_base_patch16_224.dino"``).

A name is created the way timm creates it, ``timm.create_model(name,
pretrained=True, num_classes=0)``: weights come from timm's source for the
model (the Hugging Face Hub cache, downloaded there where a network is
reachable) or from a local file (timm's ``pretrained_cfg_overlay``), after
the model's checkpoint filter, and checked strictly: every weight of the
model must come from the checkpoint, only the removed classifier may be left
over (see ``._checkpoints``). Random weights only when asked for
(``pretrained=False``). The inference view is
timm's evaluation transform for the model (``timm.data.resolve_data_config``:
its input size, interpolation, ``crop_pct``, mean and std).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import contextmanager
from urllib.parse import urlsplit

import torch
import torch.nn as nn

from ._checkpoints import CheckpointError, checked_loads
from ._hub import hub_access, hub_cache_dir, reachable, weights_error
from ._registry import module_family
from .image import ImageBackbone
from .layers import supported_layers

__all__ = [
    "TimmBackbone",
    "has_patch_embedding",
    "interpolated_position_embeddings",
    "timm_backbone",
    "timm_data_config",
]

# timm's crop modes -> skfungi's inference-view resize modes
_CROP_MODES = {"center": "shortest", "squash": "squash"}


def timm_embedding(module: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The embedding as timm pools it: ``forward_head(..., pre_logits=True)``."""
    return module.forward_head(module.forward_features(inputs), pre_logits=True)


def timm_data_config(model: nn.Module, overrides: dict | None = None) -> dict:
    """timm's evaluation settings for ``model``: ``timm.data.resolve_data_config(overrides, model=model)``.

    A model without a pretrained config (built directly rather than by
    ``timm.create_model``) takes its input size from its patch embedding.
    """
    from timm.data import resolve_data_config

    args = dict(overrides or {})
    config = getattr(model, "pretrained_cfg", None) or {}
    if "input_size" not in config and "input_size" not in args and "img_size" not in args:
        args["input_size"] = _patch_embedding_shape(model)
    return resolve_data_config(args, model=model)


class TimmBackbone(ImageBackbone):
    """A timm model as a FUNGI backbone.

    Parameters
    ----------
    model : str or torch.nn.Module
        A timm model name, with or without its pretrained tag
        (``"vit_base_patch16_224.dino"``), or a timm model instance.
    pretrained : bool or str, default=True
        For a name: ``True`` loads timm's pretrained weights
        (``timm.create_model(name, pretrained=True, num_classes=0)``: from the
        Hugging Face Hub cache, downloaded into it where a network is
        reachable; ``HF_HUB_OFFLINE=1`` is respected); the path of a local
        weights file (``.safetensors`` / ``.pth``) loads that file through
        timm's ``pretrained_cfg_overlay``; ``False`` gives random weights
        (drawn from torch's global generator: seed it, or use a
        ``FungiTransformer`` spec, which seeds them from ``random_state``).
    layer : str, optional
        Target layer; default ``blocks.<last>.attn.proj`` for ViTs.
    data_config : dict, optional
        Overrides of timm's evaluation settings, as timm takes them in
        ``resolve_data_config(args, model=model)``: ``interpolation``,
        ``crop_pct``, ``crop_mode`` (``"center"`` or ``"squash"``), ``mean``,
        ``std``, ``input_size``.

    Raises
    ------
    WeightsNotFoundError
        Within seconds, when the weights are neither cached nor downloadable
        (offline, or the network unreachable): the message names the cache
        and the local-file alternative.
    CheckpointError
        When the weights cannot be read, or do not fit the model (missing,
        unexpected or reshaped keys): the message names the file.

    Notes
    -----
    The inference view is timm's evaluation transform: the shorter side
    resized to ``floor(input_size / crop_pct)`` with the model's
    interpolation, then a centre crop (see
    :class:`~skfungi.backbones.ImageBackbone`). DINO crops and SimCLR
    patches use the same interpolation and normalisation.

    Views of another side than the input size (``views="fast"``) are
    forwarded at that side: a timm ``VisionTransformer`` interpolates its
    position embeddings to the view's patch grid (timm's own
    ``dynamic_img_size`` path, switched on only for that forward) and takes
    sides that are multiples of its patch size; a CNN (no patch embedding module)
    takes any side; other timm models with a patch embedding (Swin, MLP-Mixer,
    ...) get every view at the input size.

    Examples
    --------
    >>> from skfungi.backbones import TimmBackbone
    >>> backbone = TimmBackbone("vit_tiny_patch16_224", pretrained=False)  # random weights, asked for
    >>> backbone.default_layer, backbone.input_size, backbone.interpolation, backbone.crop_pct
    ('blocks.11.attn.proj', 224, 'bicubic', 0.9)
    """

    def __init__(
        self,
        model: str | nn.Module,
        *,
        pretrained: bool | str | os.PathLike = True,
        layer: str | None = None,
        data_config: dict | None = None,
    ):
        if isinstance(model, str):
            model = _create(model, pretrained)
        elif pretrained is not True:
            raise ValueError("pretrained applies to a model name; load weights into your instance yourself.")
        if module_family(model) != "timm" or not all(
            hasattr(model, name) for name in ("forward_features", "forward_head")
        ):
            raise TypeError(f"{type(model).__name__} is not a timm model (no forward_features / forward_head).")
        config = timm_data_config(model, data_config)
        channels, height, width = config["input_size"]
        if height != width:
            raise ValueError(f"skfungi feeds square views; this timm model expects {height}x{width} images.")
        if config["crop_mode"] not in _CROP_MODES:
            raise ValueError(
                f"timm's crop_mode {config['crop_mode']!r} is not supported; pass "
                f"data_config={{'crop_mode': 'center'}} (or 'squash')."
            )
        self.patch_size = _square_patch_size(model)
        super().__init__(
            model,
            layer=layer or _default_layer(model),
            embed=timm_embedding,
            input_size=int(height),
            mean=tuple(config["mean"]),
            std=tuple(config["std"]),
            in_channels=int(channels),
            flexible_size=self.patch_size is not None or not has_patch_embedding(model),
            interpolation=config["interpolation"],
            crop_pct=float(config["crop_pct"]),
            resize_mode=_CROP_MODES[config["crop_mode"]],
        )

    def forward_size(self, size: int) -> int:
        """``size`` rounded to the nearest multiple of a ViT's patch size (at least one patch);
        ``size`` for a CNN; the input size for other timm models."""
        if self.patch_size is None:
            return super().forward_size(size)
        return max(1, round(size / self.patch_size)) * self.patch_size

    def embed_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        # the model's own side, not input_size: an input_size replaced by the caller needs the interpolation too
        if self.patch_size is None or inputs.shape[-1] == _patch_embedding_shape(self.module)[1]:
            return super().embed_inputs(inputs)
        with interpolated_position_embeddings(self.module):
            return super().embed_inputs(inputs)


def timm_backbone(model: str | nn.Module, modality: str = "image", pretrained: bool | str = True) -> TimmBackbone:
    """Registry builder for ``"timm:<name>[.<tag>]"`` specs and timm instances."""
    return TimmBackbone(model, pretrained=pretrained)


def _create(name: str, pretrained: bool | str | os.PathLike) -> nn.Module:
    """``timm.create_model(name, ..., num_classes=0)`` with timm's weights, a local file's, or random ones."""
    import timm
    from timm.models import get_pretrained_cfg

    if not timm.is_model(name):
        raise ValueError(f"unknown timm model {name!r}; timm.list_models('<pattern>') lists the known names.")
    if pretrained is False:
        return timm.create_model(name, pretrained=False, num_classes=0)
    if pretrained is not True:
        path = os.fspath(pretrained)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"timm weights file not found: {path!r}")
        with _checked_loads():
            return timm.create_model(name, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": path})
    try:
        config = get_pretrained_cfg(name)
    except RuntimeError as error:  # an unknown tag
        raise ValueError(f"{error} timm.list_pretrained('{name.split('.')[0]}*') lists its tags.") from None
    if config is None or not (config.hf_hub_id or config.url or config.file):
        raise ValueError(
            f"timm has no pretrained weights for {name!r}; name a tagged model "
            f"(timm.list_pretrained('{name.split('.')[0]}*')), a local file with 'timm:{name}?pretrained=<path>', "
            f"or ask for random weights with 'timm:{name}?pretrained=false'."
        )
    local_hint = f"'timm:{name}?pretrained=/path/to/model.safetensors' or TimmBackbone({name!r}, pretrained=<path>)"
    if config.hf_hub_id:
        looked_in = f"the Hugging Face Hub cache {hub_cache_dir()} (repository {config.hf_hub_id})"
        with hub_access() as offline, _checked_loads():
            try:
                return timm.create_model(name, pretrained=True, num_classes=0)
            except CheckpointError:
                raise
            except (OSError, RuntimeError, ValueError) as error:
                raise weights_error(f"timm model {name!r}", looked_in, local_hint, offline, error) from error
    # weights only at a URL: timm keeps them in torch hub's checkpoint folder
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlsplit(config.url).path))
    offline = None if os.path.isfile(cached) or reachable(config.url) else f"{config.url} cannot be reached"
    try:
        if offline:
            raise FileNotFoundError(f"{cached} does not exist")
        with _checked_loads():
            return timm.create_model(name, pretrained=True, num_classes=0)
    except CheckpointError:
        raise
    except (OSError, RuntimeError, ValueError) as error:
        raise weights_error(f"timm model {name!r}", cached, local_hint, offline, error) from error


def _checked_loads():
    """timm's ``load_pretrained`` checked (see ``._checkpoints``): after the model's checkpoint filter and
    timm's removal of the classifier, every weight of the model must come from the checkpoint."""
    from timm.models import _builder

    return checked_loads(_builder, "load_pretrained", _weights_source, head_removed=True)


def _weights_source(arguments: Mapping[str, object]) -> str:
    """Where ``load_pretrained(model, pretrained_cfg, ...)`` reads: a local file, a Hub repository or a URL."""
    config = arguments.get("pretrained_cfg") or getattr(arguments["model"], "pretrained_cfg", {})
    if config.get("file"):
        return str(config["file"])
    if config.get("hf_hub_id"):
        return f"the Hugging Face Hub repository {config['hf_hub_id']} (cache {hub_cache_dir()})"
    return str(config.get("url") or "timm's pretrained weights")


def _patch_embedding_shape(model: nn.Module) -> tuple[int, int, int]:
    """(channels, height, width) of a model's patch embedding, (3, 224, 224) without one."""
    patch_embed = getattr(model, "patch_embed", None)
    size = getattr(patch_embed, "img_size", None) or (224, 224)
    proj = getattr(patch_embed, "proj", None)
    return int(getattr(proj, "in_channels", 3)), int(size[0]), int(size[-1])


def _square_patch_size(model: nn.Module) -> int | None:
    """The patch side of a timm ``VisionTransformer`` whose position embeddings timm can interpolate."""
    from timm.layers import PatchEmbed
    from timm.models.vision_transformer import VisionTransformer

    patch_embed = getattr(model, "patch_embed", None)
    if not isinstance(model, VisionTransformer) or not isinstance(patch_embed, PatchEmbed):
        return None
    height, width = patch_embed.patch_size
    return int(height) if height == width else None


def has_patch_embedding(model: nn.Module) -> bool:
    """Whether the model cuts its input into patches (a transformer or mixer, not a CNN)."""
    from timm.layers import PatchEmbed

    return any(isinstance(module, PatchEmbed) for module in model.modules())


@contextmanager
def interpolated_position_embeddings(model: nn.Module):
    """Switch on timm's ``dynamic_img_size`` path for one forward, then restore the model's flags."""
    from timm.layers import Format

    patch_embed = model.patch_embed
    saved = (model.dynamic_img_size, patch_embed.strict_img_size, patch_embed.flatten, patch_embed.output_fmt)
    # what VisionTransformer(dynamic_img_size=True) sets: the patch grid stays 2-D until the
    # position embeddings, resampled to it, are added
    model.dynamic_img_size = True
    patch_embed.strict_img_size, patch_embed.flatten, patch_embed.output_fmt = False, False, Format.NHWC
    try:
        yield
    finally:
        model.dynamic_img_size = saved[0]
        patch_embed.strict_img_size, patch_embed.flatten, patch_embed.output_fmt = saved[1:]


def _default_layer(model: nn.Module) -> str | None:
    """The paper's layer for a ViT (the last block's ``attn.proj``); for a CNN (no patch embedding) the
    last convolution or linear layer of its trunk, outside the classifier (``layer4.<last>.conv3`` of a
    ResNet-50, ``conv_head`` of an EfficientNet); None for other models with a patch embedding."""
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, nn.Sequential) and len(blocks) and hasattr(blocks[-1], "attn"):
        if isinstance(getattr(blocks[-1].attn, "proj", None), nn.Linear):
            return f"blocks.{len(blocks) - 1}.attn.proj"
    if has_patch_embedding(model):
        return None
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    head = set(map(id, classifier.modules())) if isinstance(classifier, nn.Module) else set()
    trunk = [path for path in supported_layers(model) if id(model.get_submodule(path)) not in head]
    return trunk[-1] if trunk else None
