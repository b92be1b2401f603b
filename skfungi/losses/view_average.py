"""The mean embedding of a loss's views: the no-gradient control of its gradient block.

A gradient block summarises how a loss reacts to a sample's views. Part of
any accuracy gain may come from the views themselves (test-time
augmentation), not from the gradient. :class:`ViewAverage` is that part on
its own: the L2-normalised mean of the backbone's embeddings of exactly the
views the loss builds (same settings, same seeds), with no head, no backward
pass and no projection, so it costs only the views' forwards.
"""

from __future__ import annotations

from typing import ClassVar

from sklearn.base import clone

from .._utils.sklearn_compat import StrOptions
from ._base import FeatureBlock, FungiLoss, LossContext
from .presets import LOSSES, named_loss

__all__ = ["ViewAverage"]

SUFFIX = "_views"


class ViewAverage(FeatureBlock):
    """A feature block: the mean embedding of ``loss``'s views, L2-normalised (no gradient).

    Its name is the loss's name plus ``"_views"`` (``"dino_views"``,
    ``"simclr_views"``), which is also how it is asked for by name:
    ``FungiTransformer(losses=("dino", "dino_views"))`` gives the DINO
    gradient block and its no-gradient control side by side, so a grid search
    can tell whether the gradient adds anything to the views. Its width is the
    embedding's. The KL loss's one view is the inference view, so
    ``"kl_views"`` is the embedding again.

    Parameters
    ----------
    loss : {"kl", "dino", "simclr"} or FungiLoss, default="dino"
        The loss whose views are averaged (a name gives the paper's settings).

    Attributes
    ----------
    loss_ : FungiLoss
        The loss, prepared to build views (no heads, no negative bank).

    Examples
    --------
    >>> from skfungi.losses import DINOLoss, ViewAverage
    >>> ViewAverage(DINOLoss(n_local_crops=4)).name
    'dino_views'
    """

    needs_gradient = False
    _parameter_constraints: ClassVar[dict] = {
        "loss": [StrOptions(set(LOSSES)), FungiLoss],
    }

    def __init__(self, loss="dino"):
        self.loss = loss

    @property
    def name(self) -> str:
        return self._loss().name + SUFFIX

    def _loss(self) -> FungiLoss:
        return named_loss(self.loss) if isinstance(self.loss, str) else self.loss

    def fit(self, context: LossContext) -> ViewAverage:
        self._validate_params()
        self.loss_ = clone(self._loss()).prepare_views(context)
        return self

    @property
    def view_source(self) -> FungiLoss:
        """The loss whose views (same settings, same seeds) this block averages."""
        return self.loss_

    def view_count(self, backbone) -> int:
        return self.loss_.view_count(backbone)
