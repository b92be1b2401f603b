"""What the project's study found per backbone family, added to a recommendation where it applies.

The study (docs/where_gradients_help.md, ``benchmarks/gradient_study.py``) changed one setting at a
time (target layer, loss settings, projection width, whitening) on an ImageNet CNN (MobileNetV2 on
Fashion-MNIST and digits at 32 to 224 px) and a sentence encoder (MiniLM on Rotten Tomatoes), with
every gradient block beside its no-gradient control. Two of its findings hold on every pair of their
family and say what to do next, so an evaluation that shows the same thing says so:

* **CNN** (a convolution as the target layer): DINO's gradient block never beat its views' control;
  on digits it lost by 9 to 27 points in every setting. Where DINO's block loses to its control here
  too, leaving DINO out saves its 12 views' forwards and backward passes.
* **Text encoder**: every gradient block alone lost to its control in every setting tried, and the
  embedding with every block stayed level with its control. Where no gradient set helps here either,
  no other layer or loss setting is likely to change it.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..backbones.layers import CONVOLUTIONS, resolve_layer, target_layer
from .verdict import LOSS, FeatureSetResult

__all__ = ["backbone_family", "study_advice"]

PAGE = "docs/where_gradients_help.md"


def backbone_family(adapter, modality: str, layer: str) -> str | None:
    """``"cnn"`` when the target layer is a convolution, ``"text"`` for a text encoder, else None."""
    if modality == "text":
        return "text"
    try:
        module = resolve_layer(adapter.module, target_layer(adapter, layer))
    except (ValueError, AttributeError):  # no gradient block needs the layer
        return None
    return "cnn" if isinstance(module, CONVOLUTIONS) else None


def study_advice(family: str | None, results: Sequence[FeatureSetResult], protocol: str, recommended) -> str:
    """One sentence of the study's advice for ``family`` where ``results`` show what the study found, or ""."""
    alone = {result.features[0]: result for result in results if result.gradient and len(result.features) == 1}
    if family == "cnn" and "dino" in alone and alone["dino"].comparisons[protocol]["control"].verdict == LOSS:
        return (
            " DINO's gradient block loses to the mean embedding of its views here, as it did on MobileNetV2 in "
            f"the project's study ({PAGE}): leaving DINO out of the losses saves its 12 views' backward passes."
        )
    if family == "text" and recommended is None:
        return (
            " On a sentence encoder (MiniLM) the project's study found no target layer, SimCLR, KL or projection "
            f"setting under which a gradient block beat its control ({PAGE}): keep the embedding."
        )
    return ""
