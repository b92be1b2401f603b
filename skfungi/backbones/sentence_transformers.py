"""sentence-transformers models as text backbones: an instance, or ``"sentence_transformers:<id or path>"``.

The embedding is the model's own: its ``preprocess`` (tokenizer, maximum
length, default prompt), every module of its pipeline (transformer, pooling,
dense layers, ``Normalize``) and its ``truncate_dim``, as
``SentenceTransformer.encode`` computes it. ``encode`` runs under
``torch.inference_mode``, which records no gradient, so the adapter calls the
model's forward itself.
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn

from ._hub import folder_or_hub
from ._registry import module_family
from .huggingface import attention_output_layer, check_vocabulary, checked_transformers_loads, model_folder
from .text import TextBackbone

__all__ = ["SentenceTransformerBackbone", "sentence_embedding", "sentence_transformers_backbone"]


def sentence_embedding(module: nn.Module, features: dict) -> torch.Tensor:
    """The model's ``"sentence_embedding"`` output, cut to its ``truncate_dim`` when it has one."""
    embedding = module(features)["sentence_embedding"]
    truncate_dim = getattr(module, "truncate_dim", None)
    return embedding[..., :truncate_dim] if truncate_dim else embedding


class _Preprocess:
    """``model.preprocess(texts, prompt=prompt)``: the tokenisation ``encode`` does (picklable)."""

    def __init__(self, model: nn.Module, prompt: str | None):
        self.model = model
        self.prompt = prompt

    def __call__(self, texts: list[str]) -> dict:
        return self.model.preprocess(texts, prompt=self.prompt)


class SentenceTransformerBackbone(TextBackbone):
    """A ``sentence_transformers.SentenceTransformer`` as a FUNGI text backbone.

    Parameters
    ----------
    model : SentenceTransformer, str or os.PathLike
        A model instance, or a name loaded as ``SentenceTransformer(name)``
        (a local directory, or a Hugging Face Hub id read from the hub cache
        and downloaded into it where a network is reachable).
    layer : str, optional
        Target layer; default the last transformer block's attention output
        projection (``0.model.encoder.layer.<last>.attention.output.dense``
        for BERT-like models, the paper's choice).
    prompt_name : str, optional
        A key of the model's ``prompts``, prepended to every text as
        ``encode(prompt_name=...)`` does; default: the model's
        ``default_prompt_name`` (usually none).

    Raises
    ------
    WeightsNotFoundError
        Within seconds, when a hub model is neither cached nor downloadable.
    CheckpointError
        For a name, when its transformer's weights cannot be read or do not
        fit (checked as for :class:`~skfungi.backbones.HuggingFaceTextBackbone`).

    Examples
    --------
    >>> import tempfile, transformers
    >>> from sentence_transformers import SentenceTransformer
    >>> from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    >>> from skfungi.backbones.sentence_transformers import SentenceTransformerBackbone
    >>> folder = tempfile.mkdtemp()
    >>> with open(f"{folder}/vocab.txt", "w") as f:
    ...     _ = f.write("\\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat"]))
    >>> transformers.BertTokenizerFast.from_pretrained(folder).save_pretrained(folder)  # doctest: +ELLIPSIS
    (...)
    >>> transformers.BertModel(transformers.BertConfig(vocab_size=7, hidden_size=16, num_hidden_layers=2,
    ...     num_attention_heads=2, intermediate_size=32)).save_pretrained(folder)
    >>> model = SentenceTransformer(modules=[Transformer(folder), Pooling(16), Normalize()], device="cpu")
    >>> backbone = SentenceTransformerBackbone(model)
    >>> backbone.default_layer
    '0.model.encoder.layer.1.attention.output.dense'
    >>> [round(norm, 4) for norm in backbone.embed(["a cat", ""]).norm(dim=1).tolist()]
    [1.0, 1.0]
    """

    def __init__(self, model, *, layer: str | None = None, prompt_name: str | None = None):
        if isinstance(model, (str, os.PathLike)):
            model = _load(os.fspath(model))
        if module_family(model) != "sentence_transformers" or not hasattr(model, "preprocess"):
            raise TypeError(f"{type(model).__name__} is not a sentence_transformers.SentenceTransformer.")
        prompt_name = prompt_name if prompt_name is not None else getattr(model, "default_prompt_name", None)
        prompts = getattr(model, "prompts", None) or {}
        if prompt_name is not None and prompt_name not in prompts:
            raise ValueError(f"prompt_name {prompt_name!r} is not one of the model's prompts {sorted(prompts)}.")
        self.prompt_name = prompt_name
        prompt = prompts.get(prompt_name) if prompt_name is not None else None
        super().__init__(
            model,
            _Preprocess(model, prompt or None),
            layer=layer or attention_output_layer(model),
            embed=sentence_embedding,
        )


def _load(name: str) -> nn.Module:
    """``SentenceTransformer(name)``, its transformers models loaded strictly and its tokenizer checked."""
    from sentence_transformers import SentenceTransformer

    def load() -> nn.Module:
        with checked_transformers_loads():
            return SentenceTransformer(name, device="cpu")

    model = folder_or_hub(name, load, "sentence-transformers model", "sentence_transformers")
    tokenizer = getattr(model, "tokenizer", None)
    if hasattr(tokenizer, "get_vocab"):
        check_vocabulary(tokenizer, model_folder(name) or name)
    return model


def sentence_transformers_backbone(model, modality: str = "text") -> SentenceTransformerBackbone:
    """Registry builder for ``"sentence_transformers:<id or path>"`` specs and ``SentenceTransformer`` instances."""
    return SentenceTransformerBackbone(model)
