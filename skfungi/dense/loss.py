"""The self-supervised loss of dense FUNGI: InfoNCE between the patch tokens of one image.

Every patch token ``u_t`` of an image (L2-normalised) goes through a random,
never-trained head and is normalised again: ``z_t = normalise(W u_t + b)``.
The positives of token ``t`` are the image's other tokens; its negatives are
``K`` latents ``nu_{t,m}`` of its nearest patches in the support set (other
images, computed the same way, constants). With ``s_tj = z_t . z_j``::

    l_t = -1/(T - 1) sum_{j != t} s_tj / tau
          + log( sum_{j != t} exp(s_tj / tau) + sum_m exp(z_t . nu_{t,m} / tau) )

and the image's loss is the mean of ``l_t`` over its ``T`` tokens (SimCLR's
vision form, with the temperature inside the log-sum-exp too). The loss of a
batch is the sum of its images' losses, so an image's gradient never depends
on the other images of the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["head_latents", "token_infonce"]


def head_latents(tokens: torch.Tensor, head: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``normalise(W u + b)`` of unit token features ``u`` (any leading shape)."""
    return F.normalize(F.linear(tokens, *head), dim=-1)


def token_infonce(latents: torch.Tensor, negatives: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-image losses ``(N,)`` from latents ``(N, T, L)`` and per-token negatives ``(N, T, K, L)``."""
    n_tokens = latents.shape[1]
    if n_tokens < 2:
        raise ValueError("the dense loss needs at least 2 patch tokens per image (the positives of a token).")
    similarities = latents @ latents.transpose(1, 2) / temperature  # (N, T, T)
    self_pairs = torch.eye(n_tokens, dtype=torch.bool, device=latents.device)
    positives = similarities.masked_fill(self_pairs, 0.0).sum(-1) / (n_tokens - 1)
    negative_similarities = torch.einsum("ntl,ntkl->ntk", latents, negatives) / temperature
    candidates = torch.cat([similarities.masked_fill(self_pairs, float("-inf")), negative_similarities], dim=-1)
    return (torch.logsumexp(candidates, dim=-1) - positives).mean(dim=-1)
