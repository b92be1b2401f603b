"""Hugging Face text encoders by hub id or local directory (``"hf:<id or path>"``), or an instance.

A name is loaded the way transformers loads it,
``AutoModel.from_pretrained`` / ``AutoTokenizer.from_pretrained``: a local
directory as is, a hub id from the Hugging Face Hub cache (downloaded into it
where a network is reachable; ``HF_HUB_OFFLINE=1`` is respected). The load
is checked with transformers' own report (:func:`checked_transformers_loads`):
weights that do not fit are refused, and so is a tokenizer that knows only
its special tokens (:func:`check_vocabulary`). ``transformers`` is imported
only when such a backbone is built.
"""

from __future__ import annotations

import glob
import inspect
import json
import os
import re

import torch
import torch.nn as nn

from ._checkpoints import CheckpointError, KeyReport, check, read_state_dict, replaced
from ._hub import folder_or_hub, hub_access
from ._registry import module_family
from .text import POOLINGS, TextBackbone

__all__ = [
    "HuggingFaceTextBackbone",
    "attention_output_layer",
    "check_vocabulary",
    "checked_transformers_loads",
    "huggingface_backbone",
    "model_folder",
    "sentence_transformers_settings",
]

# The paper's layer for BERT-like encoders is the last block's attention output projection.
_ATTENTION_OUTPUTS = (
    r"(?:.*\.)?layer\.(\d+)\.attention\.output\.dense",  # BERT, RoBERTa, ELECTRA, XLM-R
    r"(?:.*\.)?layer\.(\d+)\.attention\.out_lin",  # DistilBERT
    r"(?:.*\.)?layer\.(\d+)\.attention\.attn\.o",  # MPNet
    r"(?:.*\.)?block\.(\d+)\.layer\.0\.SelfAttention\.o",  # T5 encoder
    r"(?:.*\.)?layers?\.(\d+)\.(?:self_attn|attention)\.(?:o_proj|out_proj)",
)
_POOLING_MODES = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
}


def sentence_transformers_settings(path: str | os.PathLike | None) -> dict:
    """Pooling and maximum length declared by a sentence-transformers model directory.

    Reads ``modules.json`` (to find the Pooling module's folder, default
    ``1_Pooling``), that folder's ``config.json`` and ``sentence_bert_config.json``.
    Returns a dict with ``"pooling"`` and / or ``"max_length"`` when declared.

    Examples
    --------
    >>> from skfungi.backbones.huggingface import sentence_transformers_settings
    >>> sentence_transformers_settings("/no/such/directory")
    {}
    """
    if path is None or not os.path.isdir(path):
        return {}
    settings = {}
    pooling_dir = os.path.join(path, "1_Pooling")
    modules = _read_json(os.path.join(path, "modules.json"))
    if isinstance(modules, list):
        for entry in modules:
            if isinstance(entry, dict) and str(entry.get("type", "")).endswith(".Pooling"):
                pooling_dir = os.path.join(path, entry.get("path", ""))
    config = _read_json(os.path.join(pooling_dir, "config.json"))
    if isinstance(config, dict):
        modes = [mode for key, mode in _POOLING_MODES.items() if config.get(key)]
        others = sorted(key for key, value in config.items() if key.startswith("pooling_mode") and value)
        if len(modes) == 1 and len(others) == 1:
            settings["pooling"] = modes[0]
        elif others:
            raise ValueError(
                f"{pooling_dir}/config.json asks for pooling {others}; skfungi pools with one of {POOLINGS}: "
                "pass pooling= (a name or a callable pooling(hidden, attention_mask)) explicitly."
            )
    sbert = _read_json(os.path.join(path, "sentence_bert_config.json"))
    if isinstance(sbert, dict) and isinstance(sbert.get("max_seq_length"), int):
        settings["max_length"] = sbert["max_seq_length"]
    return settings


def _read_json(path: str):
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


class HuggingFaceTextBackbone(TextBackbone):
    """A Hugging Face text encoder (BERT, MiniLM, RoBERTa, T5 encoder...) as a FUNGI backbone.

    Parameters
    ----------
    model : str, os.PathLike or transformers.PreTrainedModel
        A local model directory or a Hugging Face Hub id (loaded with
        ``AutoModel.from_pretrained``), or a model instance.
    pretrained : bool, default=True
        For a name: ``False`` builds the architecture of its ``config.json``
        with random weights (``AutoModel.from_config``).
    tokenizer : Hugging Face tokenizer, optional
        Default: ``AutoTokenizer.from_pretrained`` of the model's directory or
        hub id (for an instance, its ``name_or_path``).
    layer : str, optional
        Target layer. Default: the last block's attention output projection,
        ``encoder.layer.<last>.attention.output.dense`` for BERT-like models
        (the paper's choice).
    pooling : {"auto", "mean", "cls", "max"} or callable, default="auto"
        ``"auto"`` follows the model card: the sentence-transformers
        ``1_Pooling/config.json`` (found through ``modules.json``) when the
        model's directory (or its hub cache folder) has one, else ``"mean"``
        over the attention mask. For a sentence-transformers model, a
        ``SentenceTransformer`` object (or ``"sentence_transformers:<id>"``)
        applies its own pooling and normalisation exactly.
    max_length : int or "auto", default="auto"
        Longest token sequence; longer texts are truncated at the end.
        ``"auto"``: ``max_seq_length`` of ``sentence_bert_config.json`` when
        present (256 for all-MiniLM-L6-v2), else the tokenizer's
        ``model_max_length`` capped by ``config.max_position_embeddings``.

    Raises
    ------
    WeightsNotFoundError
        Within seconds, when a hub model is neither cached nor downloadable.
    CheckpointError
        When the weights cannot be read or do not fit the model (a missing
        ``pooler`` excepted: its output is never used).
    ValueError
        When the folder has no tokenizer files (the tokenizer transformers
        builds then knows only its special tokens).

    Notes
    -----
    The embedding is the pooled last hidden state, not L2-normalised (a
    sentence-transformers ``Normalize`` module is not applied); FUNGI
    normalises the embedding block itself. For encoder-decoder models (T5)
    only the encoder runs. Each batch is padded to its longest text and the
    pooling ignores padding, so a text's features do not depend on its batch.

    Examples
    --------
    >>> import tempfile, transformers
    >>> from skfungi.backbones.huggingface import HuggingFaceTextBackbone
    >>> folder = tempfile.mkdtemp()
    >>> with open(f"{folder}/vocab.txt", "w") as f:
    ...     _ = f.write("\\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat"]))
    >>> tokenizer = transformers.BertTokenizerFast.from_pretrained(folder)
    >>> config = transformers.BertConfig(vocab_size=7, hidden_size=16, num_hidden_layers=2,
    ...                                  num_attention_heads=2, intermediate_size=32)
    >>> backbone = HuggingFaceTextBackbone(transformers.BertModel(config), tokenizer=tokenizer)
    >>> backbone.default_layer, backbone.pooling, backbone.max_length
    ('encoder.layer.1.attention.output.dense', 'mean', 512)
    >>> backbone.embed(["a cat", ""]).shape
    torch.Size([2, 16])
    """

    def __init__(
        self,
        model,
        *,
        pretrained: bool = True,
        tokenizer=None,
        layer: str | None = None,
        pooling="auto",
        max_length: int | str = "auto",
    ):
        if isinstance(model, (str, os.PathLike)):
            source = os.fspath(model)
            model = _load_model(source, pretrained)
        elif isinstance(model, nn.Module):
            if module_family(model) != "hf" or not hasattr(model, "config"):
                raise TypeError(
                    f"{type(model).__name__} is not a transformers model; wrap other text encoders in "
                    "skfungi.backbones.TextBackbone(module, tokenizer, ...)."
                )
            if pretrained is not True:
                raise ValueError("pretrained applies to a model name; load weights into your instance yourself.")
            source = getattr(model, "name_or_path", None) or None
        else:
            raise TypeError(
                f"model must be a local directory, a hub id or a transformers model, got {type(model).__name__}."
            )
        settings = sentence_transformers_settings(model_folder(source))
        if tokenizer is None:
            tokenizer = _load_tokenizer(source, type(model).__name__)
        if pooling == "auto":
            pooling = settings.get("pooling", "mean")
        if max_length == "auto":
            max_length = settings.get("max_length")
            model_limit = getattr(model.config, "max_position_embeddings", None)
            if max_length is not None and isinstance(model_limit, int):
                max_length = min(max_length, model_limit)
        super().__init__(
            model, tokenizer, layer=layer or attention_output_layer(model), pooling=pooling, max_length=max_length
        )
        self.encoder_only = bool(getattr(model.config, "is_encoder_decoder", False))
        self.source = source

    def token_states(self, inputs) -> torch.Tensor:
        """Last hidden state of the model (of its encoder, for encoder-decoder models such as T5)."""
        if self.encoder_only:
            return self.module.get_encoder()(**inputs).last_hidden_state
        return super().token_states(inputs)


def _load_model(source: str, pretrained: bool) -> nn.Module:
    """``AutoModel.from_pretrained(source)`` (or ``from_config`` for random weights) of a directory or hub id."""
    from transformers import AutoConfig, AutoModel

    if pretrained not in (True, False):
        raise ValueError(f"pretrained must be True or False for a Hugging Face model, got {pretrained!r}.")

    def load():
        if pretrained:
            with checked_transformers_loads():
                return AutoModel.from_pretrained(source)
        return AutoModel.from_config(AutoConfig.from_pretrained(source))

    return folder_or_hub(source, load, "Hugging Face model", "hf")


def checked_transformers_loads():
    """Inside the block, each ``from_pretrained`` of a transformers model is checked (see ``._checkpoints``).

    The check reads transformers' own report (``output_loading_info=True``,
    with mismatched shapes reported rather than raised). The model is built
    without the checkpoint's task head, and its ``pooler`` may be missing:
    skfungi pools the token states and never reads the pooler's output.
    A failed load whose weight files cannot be read names the damaged file.
    """
    from transformers import PreTrainedModel

    return replaced(PreTrainedModel, "from_pretrained", _checking)


def _checking(from_pretrained):
    signature = inspect.signature(from_pretrained)

    def checked_from_pretrained(cls, *args, output_loading_info: bool = False, **kwargs):
        name = os.fspath(signature.bind_partial(cls, *args, **kwargs).arguments["pretrained_model_name_or_path"])
        kwargs["ignore_mismatched_sizes"] = True
        try:
            model, info = from_pretrained(cls, *args, output_loading_info=True, **kwargs)
        except CheckpointError:
            raise
        except Exception:
            for path in _weight_files(model_folder(name)):
                read_state_dict(path)  # names the damaged file, if one is
            raise
        order = {key: index for index, key in enumerate(model.state_dict())}
        report = KeyReport(
            missing=tuple(sorted(info["missing_keys"], key=lambda key: order.get(key, -1))),
            unexpected=tuple(sorted(info["unexpected_keys"])),
            mismatched=tuple(
                (key, tuple(file), tuple(own))
                for key, file, own in sorted(info["mismatched_keys"], key=lambda entry: order.get(entry[0], -1))
            ),
        )
        check(report, model, _weights_label(name), head_removed=True, unused=("pooler",))
        return (model, info) if output_loading_info else model

    return checked_from_pretrained


def _weight_files(folder: str | None) -> list[str]:
    """The weight files transformers reads in ``folder``: its ``.safetensors`` files, else its ``.bin`` ones."""
    if folder is None:
        return []
    for pattern in ("*.safetensors", "*.bin"):
        files = sorted(glob.glob(os.path.join(glob.escape(folder), pattern)))
        if files:
            return files
    return []


def _weights_label(name: str) -> str:
    files = _weight_files(model_folder(name))
    if files:
        return ", ".join(files)
    return name if os.path.isdir(name) else f"the Hugging Face Hub repository {name}"


def model_folder(source: str | None) -> str | None:
    """The folder holding a model's files: ``source`` itself, or its hub cache snapshot (None if not cached)."""
    if source is None or os.path.isdir(source):
        return source
    from huggingface_hub import try_to_load_from_cache

    try:
        config = try_to_load_from_cache(source, "config.json")
    except ValueError:  # not a valid hub id
        return None
    return os.path.dirname(config) if isinstance(config, str) else None


def _load_tokenizer(source: str | None, model_name: str):
    if source is None:
        raise ValueError(
            f"cannot find the tokenizer of this {model_name}: it has no name_or_path; "
            "pass HuggingFaceTextBackbone(model, tokenizer=...)."
        )
    from transformers import AutoTokenizer

    with hub_access():
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"cannot load a tokenizer from {source!r} ({error}); "
                "pass HuggingFaceTextBackbone(model, tokenizer=...)."
            ) from error
    check_vocabulary(tokenizer, model_folder(source) or source)
    return tokenizer


def check_vocabulary(tokenizer, source: str) -> None:
    """Refuse a tokenizer that knows only its special tokens.

    transformers builds one from a folder without tokenizer files (only
    ``config.json`` and the weights): it maps every text to ``[UNK]``, so
    different texts would get identical features.
    """
    vocabulary = set(tokenizer.get_vocab())
    if vocabulary <= set(getattr(tokenizer, "all_special_tokens", ())):
        raise ValueError(
            f"the tokenizer loaded from {source} knows only its {len(vocabulary)} special tokens "
            f"({', '.join(sorted(vocabulary))}): {source} has no tokenizer files (tokenizer.json, vocab.txt, "
            "tokenizer_config.json...), and every text would become the same tokens. Copy the tokenizer files "
            "of the model's repository there, or pass the tokenizer yourself."
        )


def attention_output_layer(model: nn.Module) -> str | None:
    """The deepest attention output projection among the known naming schemes, if any."""
    best = None
    for pattern in _ATTENTION_OUTPUTS:
        for path, layer in model.named_modules():
            if "decoder" in path:  # only the encoder runs (encoder-decoder models)
                continue
            match = re.fullmatch(pattern, path)
            if match and isinstance(layer, nn.Linear) and (best is None or int(match.group(1)) > best[0]):
                best = (int(match.group(1)), path)
        if best is not None:
            return best[1]
    return None


def huggingface_backbone(model, modality: str = "text", pretrained: bool = True) -> HuggingFaceTextBackbone:
    """Registry builder for ``"hf:<hub id or local path>"`` specs and ``transformers`` instances."""
    return HuggingFaceTextBackbone(model, pretrained=pretrained)
