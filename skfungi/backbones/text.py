"""Text backbones: any torch module with its tokenizer (text inputs are validated by ``skfungi.inputs.text``).

A text sample is a Python ``str``. :class:`TextBackbone` tokenises a list of
texts (padding each batch to its longest text), runs the module and pools
its token states into one embedding per text. Padding never changes a
text's embedding: pooling only sees the attention mask's tokens, and the
module is expected to mask padded keys (every Hugging Face encoder does).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..inputs.columns import unwrap_column
from ..inputs.text import as_texts
from ._base import Backbone

__all__ = ["POOLINGS", "TextBackbone", "as_texts", "pool_tokens"]

POOLINGS = ("mean", "cls", "max")

# Hugging Face tokenizers report this (or larger) when a model has no length limit.
_NO_LIMIT = 10**6


def pool_tokens(hidden: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """Pool ``(N, L, H)`` token states into ``(N, H)`` over the tokens the mask keeps.

    ``"mean"``: average of the kept tokens (sentence-transformers' mean
    pooling); ``"cls"``: the first token; ``"max"``: element-wise maximum
    over the kept tokens.

    Examples
    --------
    >>> import torch
    >>> from skfungi.backbones.text import pool_tokens
    >>> hidden = torch.tensor([[[1.0], [3.0], [100.0]]])
    >>> pool_tokens(hidden, torch.tensor([[1, 1, 0]]), "mean")
    tensor([[2.]])
    """
    if pooling == "cls":
        return hidden[:, 0]
    if attention_mask is None:
        attention_mask = hidden.new_ones(hidden.shape[:2])
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    if pooling == "mean":
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    if pooling == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
    raise ValueError(f"pooling must be one of {POOLINGS} or a callable, got {pooling!r}.")


def _is_hf_tokenizer(tokenizer) -> bool:
    return any(
        cls.__name__ == "PreTrainedTokenizerBase" and cls.__module__.startswith("transformers.")
        for cls in type(tokenizer).__mro__
    )


class TextBackbone(Backbone):
    """Wrap a torch text encoder and its tokenizer.

    Parameters
    ----------
    module : torch.nn.Module
        The frozen encoder. skfungi runs it in eval mode with frozen weights
        and restores its flags afterwards; it is never modified.
    tokenizer : Hugging Face tokenizer or callable
        A Hugging Face tokenizer is called as ``tokenizer(texts,
        padding="longest", truncation=True, max_length=max_length,
        return_tensors="pt")``. Any other callable is called as
        ``tokenizer(texts)`` and must return a tensor of token ids or a
        mapping of tensors, and handle length limits itself. Use a picklable
        object (not a lambda) if the fitted transformer is to be pickled.
    layer : str, optional
        Dotted path of the default target layer (an ``nn.Linear``).
        ``FungiTransformer(layer=...)`` overrides it.
    pooling : {"mean", "cls", "max"} or callable, default="mean"
        How token states become one embedding (ignored when ``embed`` is
        given): ``"mean"`` over the attention mask's tokens, the first token
        (``"cls"``), or the masked maximum. A callable is called as
        ``pooling(hidden, attention_mask) -> (N, E)`` with ``hidden`` of shape
        ``(N, L, H)`` and the mask (or None).
    max_length : int, optional
        Longest token sequence for a Hugging Face tokenizer; longer texts are
        truncated (their end is dropped). Default: the tokenizer's
        ``model_max_length``, else the module's ``config.max_position_embeddings``.
    embed : callable, optional
        ``embed(module, inputs) -> (N, E)``, replacing the module call and the
        pooling; ``inputs`` is what the tokenizer returned, on the module's
        device. Default: call ``module(**inputs)`` (or ``module(inputs)`` for a
        tensor) and pool its ``last_hidden_state`` (or first output).

    Notes
    -----
    Empty and whitespace-only texts are valid samples: they encode as the
    tokenizer's empty sequence (for BERT, ``[CLS] [SEP]``).

    Examples
    --------
    >>> import torch, torch.nn as nn
    >>> from skfungi.backbones.text import TextBackbone
    >>> class Encoder(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.embedding = nn.Embedding(256, 8)
    ...         self.proj = nn.Linear(8, 8)
    ...     def forward(self, input_ids, attention_mask):
    ...         return self.proj(self.embedding(input_ids))
    >>> def byte_tokenizer(texts):
    ...     ids = [list(text.encode()) or [0] for text in texts]
    ...     width = max(map(len, ids))
    ...     return {"input_ids": torch.tensor([row + [0] * (width - len(row)) for row in ids]),
    ...             "attention_mask": torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids])}
    >>> backbone = TextBackbone(Encoder(), byte_tokenizer, layer="proj")
    >>> backbone.embed(["a cat", "a much longer text"]).shape
    torch.Size([2, 8])
    """

    modality = "text"

    def __init__(
        self,
        module: nn.Module,
        tokenizer,
        *,
        layer: str | None = None,
        pooling: str | Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor] = "mean",
        max_length: int | None = None,
        embed: Callable[[nn.Module, object], torch.Tensor] | None = None,
    ):
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}.")
        if tokenizer is None or not callable(tokenizer):
            raise TypeError(
                f"tokenizer must be a Hugging Face tokenizer or a callable texts -> token tensors, got {tokenizer!r}."
            )
        if not callable(pooling) and pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS} or a callable, got {pooling!r}.")
        if embed is not None and not callable(embed):
            raise TypeError(f"embed must be a callable embed(module, inputs) -> (N, E), got {embed!r}.")
        if _is_hf_tokenizer(tokenizer) and getattr(tokenizer, "pad_token", None) is None:
            raise ValueError(
                f"the tokenizer {type(tokenizer).__name__} has no padding token, and batches of texts are padded; "
                "set one first (e.g. tokenizer.pad_token = tokenizer.eos_token)."
            )
        self.module = module
        self.tokenizer = tokenizer
        self.default_layer = layer
        self.pooling = pooling
        self.embed_fn = embed
        self.max_length = self._resolve_max_length(max_length)

    def _resolve_max_length(self, max_length) -> int | None:
        if not _is_hf_tokenizer(self.tokenizer):
            if max_length is not None:
                raise ValueError(
                    "max_length applies to Hugging Face tokenizers; a custom tokenizer callable must "
                    "truncate texts itself."
                )
            return None
        if max_length is not None:
            if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or max_length < 2:
                raise ValueError(f"max_length must be an int >= 2, got {max_length!r}.")
            return int(max_length)
        limits = [getattr(self.tokenizer, "model_max_length", None)]
        limits.append(getattr(getattr(self.module, "config", None), "max_position_embeddings", None))
        limits = [int(limit) for limit in limits if isinstance(limit, int) and 0 < limit < _NO_LIMIT]
        if not limits:
            raise ValueError(
                "the tokenizer reports no maximum length and the module has no config.max_position_embeddings; "
                "pass max_length=..."
            )
        return min(limits)

    # -- the adapter contract ------------------------------------------------

    def as_samples(self, X, estimator=None, reset: bool = True) -> list[str]:
        """The texts of ``X`` (see :func:`as_texts`); column forms too (see ``skfungi.inputs.columns``)."""
        return as_texts(unwrap_column(X, "text", estimator, reset))

    def canonical(self, sample: str, index: int) -> str:
        if not isinstance(sample, str):
            raise TypeError(f"sample {index} is a {type(sample).__name__}, not a str.")
        return sample

    def sample_key(self, sample: str) -> bytes:
        """Digest of the text's UTF-8 bytes (seeds its word-deletion views)."""
        return hashlib.blake2b(b"text\0" + sample.encode("utf-8"), digest_size=16).digest()

    def inference_view(self, sample: str) -> str:
        """The whole text (truncated by the tokenizer at ``max_length`` tokens)."""
        return sample

    def embed(self, views: Sequence[str]) -> torch.Tensor:
        """``(N, E)`` embeddings of a list of texts."""
        texts = list(views)
        inputs = self.tokenize(texts)
        if self.embed_fn is not None:
            output = self.embed_fn(self.module, inputs)
        else:
            output = self._pooled(inputs)
        return self._check_embedding(output, len(texts))

    # -- pieces -----------------------------------------------------------------

    def tokenize(self, texts: list[str]):
        """Token tensors of ``texts`` on the module's device (floating tensors in its dtype)."""
        if _is_hf_tokenizer(self.tokenizer):
            inputs = self.tokenizer(
                texts, padding="longest", truncation=True, max_length=self.max_length, return_tensors="pt"
            )
            inputs = dict(inputs)
        else:
            inputs = self.tokenizer(texts)
        if isinstance(inputs, torch.Tensor):
            return self._to_module(inputs)
        if isinstance(inputs, Mapping):
            return {
                name: self._to_module(value) if isinstance(value, torch.Tensor) else value
                for name, value in inputs.items()
            }
        raise TypeError(
            f"the tokenizer returned a {type(inputs).__name__}; it must return a tensor of token ids or a "
            "mapping of tensors (such as input_ids and attention_mask)."
        )

    def _to_module(self, tensor: torch.Tensor) -> torch.Tensor:
        dtype = self.dtype if tensor.is_floating_point() else tensor.dtype
        return tensor.to(device=self.device, dtype=dtype)

    def token_states(self, inputs) -> torch.Tensor:
        """``(N, L, H)`` token states: ``module(**inputs)``'s ``last_hidden_state`` (or first output)."""
        output = self.module(**inputs) if isinstance(inputs, Mapping) else self.module(inputs)
        return _token_states(output)

    def _pooled(self, inputs) -> torch.Tensor:
        hidden = self.token_states(inputs)
        mask = inputs.get("attention_mask") if isinstance(inputs, Mapping) else None
        if callable(self.pooling):
            return self.pooling(hidden, mask)
        if hidden.ndim != 3:
            raise ValueError(
                f"the module's token states must be (N, L, H), got shape {tuple(hidden.shape)}; "
                "give TextBackbone an embed function for this module."
            )
        return pool_tokens(hidden, mask, self.pooling)

    def __repr__(self) -> str:
        pooling = self.pooling if isinstance(self.pooling, str) else getattr(self.pooling, "__name__", "custom")
        pooling = "custom embed" if self.embed_fn is not None else f"pooling={pooling!r}"
        return f"{type(self).__name__}({type(self.module).__name__}, {pooling})"


def _token_states(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    hidden = getattr(output, "last_hidden_state", None)
    if isinstance(hidden, torch.Tensor):
        return hidden
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(
        f"cannot find token states in the module's output ({type(output).__name__}); "
        "give TextBackbone an embed function."
    )
