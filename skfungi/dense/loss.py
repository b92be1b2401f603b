"""The self-supervised loss of dense FUNGI: InfoNCE between the patch tokens of one image.

Every patch token ``u_t`` of an image (L2-normalised) goes through a random,
never-trained head and is normalised again: ``z_t = normalise(W u_t + b)``
(:func:`~skfungi.losses.contrastive.head_latents`). The positives of token
``t`` are the image's other tokens; its negatives are ``K`` latents
``nu_{t,m}`` of its nearest patches in the support set (other images,
computed the same way, constants). The loss of token ``t`` is SimCLR's
InfoNCE (:func:`~skfungi.losses.contrastive.info_nce`, the vision form with
the temperature inside the log-sum-exp too) over the image's tokens as its
views, and the image's loss is the mean over its ``T`` tokens. The loss of a
batch is the sum of its images' losses, so an image's gradient never
depends on the other images of the batch.
"""

from __future__ import annotations

import torch

from ..losses.contrastive import head_latents, info_nce

__all__ = ["head_latents", "token_infonce"]


def token_infonce(latents: torch.Tensor, negatives: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-image losses ``(N,)`` from latents ``(N, T, L)`` and per-token negatives ``(N, T, K, L)``."""
    if latents.shape[1] < 2:
        raise ValueError("the dense loss needs at least 2 patch tokens per image (the positives of a token).")
    positives = latents @ latents.transpose(1, 2)  # (N, T, T)
    negative_similarities = torch.einsum("ntl,ntkl->ntk", latents, negatives)
    return info_nce(positives, negative_similarities, temperature, "all").mean(dim=-1)
