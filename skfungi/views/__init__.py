"""Views: seeded, per-sample augmentations, built in one place for every loss and modality.

A loss asks for its views through :func:`loss_views`, by the kind of views it
uses (``"dino"``, ``"simclr"``) and the backbone's modality; the maker of
that pair reads the loss's view settings (crop counts and scales, grid size,
drop probability...) and the adapter's geometry (input size, interpolation,
the sides it can forward, a tabular adapter's feature spreads). Backbones
know nothing of losses, and a loss never builds a view itself. The KL loss's
one view is the adapter's inference view (:func:`inference_views`).

One module per modality: :mod:`~skfungi.views.image` (crops, patches),
:mod:`~skfungi.views.text` (word deletion), :mod:`~skfungi.views.audio`
(noise and time roll), :mod:`~skfungi.views.tabular` (feature dropout and
noise). Every maker returns a list of groups of views, each group encodable
in one forward (views of one side, or of one length).
"""

from __future__ import annotations

from . import audio, image, tabular, text

__all__ = ["MAKERS", "inference_views", "loss_views"]

# (kind of views, modality) -> maker(sample, settings, backbone, generator, count)
MAKERS = {
    ("dino", "image"): image.dino_views,
    ("simclr", "image"): image.simclr_views,
    ("simclr", "text"): text.simclr_views,
    ("simclr", "audio"): audio.simclr_views,
    ("simclr", "tabular"): tabular.simclr_views,
}


def inference_views(sample, backbone) -> list:
    """The one view of the KL loss: the adapter's inference view, in a group of its own."""
    return [[backbone.inference_view(sample)]]


def loss_views(kind: str, settings, sample, backbone, generator, count: int | None = None) -> list:
    """The views of kind ``kind`` of one canonical sample, as ``settings`` (the loss) sets them.

    ``count`` asks for that many views where the kind has a count (SimCLR's positive views).
    """
    maker = MAKERS.get((kind, backbone.modality))
    if maker is None:
        raise ValueError(f"there are no {kind} views for {backbone.modality} samples.")
    return maker(sample, settings, backbone, generator, count)
