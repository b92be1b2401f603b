"""DINO self-distillation between random heads on multi-crop views."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from .._utils.numerics import l2_normalize
from .._utils.validation import int_range, real_range
from ._base import FungiLoss, LossContext

__all__ = ["DINOLoss"]


class DINOLoss(FungiLoss):
    """Cross-entropy between a random teacher head and a random student head.

    Views: ``n_global_crops`` global and ``n_local_crops`` local random resized
    crops (no flips or colour changes), resized with the backbone's own
    interpolation. The student sees every view; the
    teacher, a separate random head without gradient, sees the global views'
    embeddings (the student's own forward, detached). The loss sums
    ``H(softmax(t / teacher_temperature), log_softmax(s / student_temperature))``
    over all teacher x student pairs, same-view pairs included. Embeddings are
    L2-normalised before both heads.

    Parameters
    ----------
    n_global_crops : int, default=2
    n_local_crops : int, default=10
    global_crop_scale : tuple of float, default=(0.25, 1.0)
    local_crop_scale : tuple of float, default=(0.05, 0.25)
    local_crop_size : int, float or None, default=None
        Side at which local crops are forwarded: ``None`` is the backbone's
        input size (the paper's setting), an int is pixels, a float in
        ``(0, 1]`` is a fraction of the input size (``views="fast"`` uses
        0.43: 96 px at 224, DINO's own local crop size). The side is then
        adjusted to what the backbone can forward (see
        :meth:`~skfungi.backbones.ImageBackbone.forward_size`, see
        ``skfungi.views.image.dino_local_size``: a multiple of
        the patch size for timm ViTs, whose position embeddings are
        interpolated; the input size for fixed-size models).
    latent_dim : int, default=2048
    teacher_temperature : float, default=0.07
    student_temperature : float, default=0.1
    """

    name = "dino"
    view_kind = "dino"
    _parameter_constraints: ClassVar[dict] = {
        "n_global_crops": [int_range(1)],
        "n_local_crops": [int_range(0)],
        "global_crop_scale": [tuple, list],
        "local_crop_scale": [tuple, list],
        "local_crop_size": [None, int_range(1), real_range(0, 1, "right")],
        "latent_dim": [int_range(2)],
        "teacher_temperature": [real_range(0, None, "neither")],
        "student_temperature": [real_range(0, None, "neither")],
    }

    def __init__(
        self,
        n_global_crops: int = 2,
        n_local_crops: int = 10,
        global_crop_scale: tuple[float, float] = (0.25, 1.0),
        local_crop_scale: tuple[float, float] = (0.05, 0.25),
        local_crop_size: int | float | None = None,
        latent_dim: int = 2048,
        teacher_temperature: float = 0.07,
        student_temperature: float = 0.1,
    ):
        self.n_global_crops = n_global_crops
        self.n_local_crops = n_local_crops
        self.global_crop_scale = global_crop_scale
        self.local_crop_scale = local_crop_scale
        self.local_crop_size = local_crop_size
        self.latent_dim = latent_dim
        self.teacher_temperature = teacher_temperature
        self.student_temperature = student_temperature

    def prepare_views(self, context: LossContext) -> DINOLoss:
        """Check the settings (crops need an image backbone); returns self."""
        super().prepare_views(context)
        if context.backbone.modality != "image":
            raise ValueError(
                f"the DINO loss needs image crops; this backbone's modality is {context.backbone.modality!r}."
            )
        for name in ("global_crop_scale", "local_crop_scale"):
            scale = getattr(self, name)
            if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
                raise ValueError(f"{name} must be a pair (low, high) with 0 < low <= high <= 1, got {scale!r}.")
        return self

    def fit(self, context: LossContext) -> DINOLoss:
        self.prepare_views(context)
        self._draw_head(context, "student_head_", self.latent_dim, "student")
        self._draw_head(context, "teacher_head_", self.latent_dim, "teacher")
        return self

    def view_count(self, backbone) -> int:
        return self.n_global_crops + self.n_local_crops

    def sample_losses(self, embeddings: torch.Tensor) -> torch.Tensor:
        normalised = l2_normalize(embeddings)
        student = F.log_softmax(F.linear(normalised, *self.student_head_) / self.student_temperature, dim=-1)
        with torch.no_grad():
            teacher_logits = F.linear(normalised[:, : self.n_global_crops], *self.teacher_head_)
            teacher = F.softmax(teacher_logits / self.teacher_temperature, dim=-1)
        # sum over teacher views t and student views s of -sum_k p_t[k] log q_s[k]
        return -torch.einsum("stk,svk->s", teacher, student)
