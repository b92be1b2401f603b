"""Hugging Face text encoders from a local directory (``"hf:/path"``) or an instance.

``transformers`` is imported only when such a backbone is built. Nothing is
ever downloaded: a path must be a local model directory.
"""

from __future__ import annotations

import json
import os
import re

import torch
import torch.nn as nn

from .text import POOLINGS, TextBackbone

__all__ = ["HuggingFaceTextBackbone", "huggingface_backbone", "sentence_transformers_settings"]

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


def is_huggingface_model(module: nn.Module) -> bool:
    """True for ``transformers`` models (without importing transformers)."""
    return any(
        cls.__name__ == "PreTrainedModel" and cls.__module__.startswith("transformers.") for cls in type(module).__mro__
    )


class HuggingFaceTextBackbone(TextBackbone):
    """A Hugging Face text encoder (BERT, MiniLM, RoBERTa, T5 encoder...) as a FUNGI backbone.

    Parameters
    ----------
    model : str, os.PathLike or transformers.PreTrainedModel
        A local model directory (loaded with ``AutoModel.from_pretrained(path,
        local_files_only=True)``) or a model instance. Nothing is downloaded.
    tokenizer : Hugging Face tokenizer, optional
        Default: ``AutoTokenizer.from_pretrained`` of the model directory
        (for an instance, its ``name_or_path`` when that is a local
        directory; otherwise ``tokenizer`` is required).
    layer : str, optional
        Target layer. Default: the last block's attention output projection,
        ``encoder.layer.<last>.attention.output.dense`` for BERT-like models
        (the paper's choice).
    pooling : {"auto", "mean", "cls", "max"} or callable, default="auto"
        ``"auto"`` follows the model card: the sentence-transformers
        ``1_Pooling/config.json`` (found through ``modules.json``) when the
        directory has one, else ``"mean"`` over the attention mask.
    max_length : int or "auto", default="auto"
        Longest token sequence; longer texts are truncated at the end.
        ``"auto"``: ``max_seq_length`` of ``sentence_bert_config.json`` when
        present (256 for all-MiniLM-L6-v2), else the tokenizer's
        ``model_max_length`` capped by ``config.max_position_embeddings``.

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
    >>> backbone.encode(["a cat", ""]).shape
    torch.Size([2, 16])
    """

    def __init__(
        self,
        model,
        *,
        tokenizer=None,
        layer: str | None = None,
        pooling="auto",
        max_length: int | str = "auto",
    ):
        if isinstance(model, (str, os.PathLike)):
            source = os.fspath(model)
            model = _load_model(source)
        elif isinstance(model, nn.Module):
            if not is_huggingface_model(model):
                raise TypeError(
                    f"{type(model).__name__} is not a transformers model; wrap other text encoders in "
                    "skfungi.backbones.TextBackbone(module, tokenizer, ...)."
                )
            source = getattr(model, "name_or_path", None) or None
        else:
            raise TypeError(
                f"model must be a local directory path or a transformers model, got {type(model).__name__}."
            )
        settings = sentence_transformers_settings(source)
        if tokenizer is None:
            tokenizer = _load_tokenizer(source, type(model).__name__)
        if pooling == "auto":
            pooling = settings.get("pooling", "mean")
        if max_length == "auto":
            max_length = settings.get("max_length")
            model_limit = getattr(model.config, "max_position_embeddings", None)
            if max_length is not None and isinstance(model_limit, int):
                max_length = min(max_length, model_limit)
        super().__init__(model, tokenizer, layer=layer or _default_layer(model), pooling=pooling, max_length=max_length)
        self.encoder_only = bool(getattr(model.config, "is_encoder_decoder", False))
        self.source = source

    def token_states(self, inputs) -> torch.Tensor:
        """Last hidden state of the model (of its encoder, for encoder-decoder models such as T5)."""
        if self.encoder_only:
            return self.module.get_encoder()(**inputs).last_hidden_state
        return super().token_states(inputs)


def _load_model(path: str) -> nn.Module:
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"Hugging Face model directory not found: {path!r}. skfungi never downloads; give the path of a "
            "local directory holding config.json and the weights (e.g. saved with save_pretrained)."
        )
    from transformers import AutoModel

    return AutoModel.from_pretrained(path, local_files_only=True)


def _load_tokenizer(source: str | None, model_name: str):
    if source is None or not os.path.isdir(source):
        raise ValueError(
            f"cannot find the tokenizer of this {model_name}: its name_or_path {source!r} is not a local "
            "directory; pass HuggingFaceTextBackbone(model, tokenizer=...)."
        )
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"cannot load a tokenizer from {source!r} ({error}); pass HuggingFaceTextBackbone(model, tokenizer=...)."
        ) from error


def _default_layer(model: nn.Module) -> str | None:
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


def huggingface_backbone(model, modality: str = "auto") -> HuggingFaceTextBackbone:
    """Registry entry for ``"hf:<local path>"`` specs and ``transformers`` instances (text only)."""
    if modality not in ("auto", "text"):
        raise ValueError(f"Hugging Face backbones are text encoders in skfungi; modality={modality!r} is not possible.")
    return HuggingFaceTextBackbone(model)
