"""What the project's study found per backbone family, added to a recommendation where it applies.

The study (docs/where_gradients_help.md, ``benchmarks/gradient_study.py``) changed one setting at a
time (target layer, loss settings, projection width, whitening) on an ImageNet CNN (MobileNetV2 on
Fashion-MNIST and digits at 32 to 224 px), a sentence encoder (MiniLM on Rotten Tomatoes) and a
recurrent speaker encoder (Resemblyzer on spoken prompts), with every gradient block beside its
no-gradient control. Its findings that held in every setting of a family, and say what to do next:

* **CNN** (a convolution as the target layer): DINO's gradient block never beat its views' control
  beyond the spread; on digits it lost by 9 to 27 points in every setting. Where DINO's block loses
  to its control here too, leaving DINO out saves its 12 views' backward passes.
* **Sentence encoder** and **recurrent encoder**: in no extraction setting did a gradient block, or
  the embedding with every block, beat its control beyond the spread (most blocks scored 2 to 14
  points below it). Where no gradient set helps here either, the study found no layer or loss
  setting that changed it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn

from ..backbones.layers import CONVOLUTIONS, resolve_layer, target_layer
from .verdict import LOSS, FeatureSetResult

__all__ = ["backbone_family", "study_advice"]

PAGE = "docs/where_gradients_help.md"


def backbone_family(adapter, modality: str, layer: str) -> str | None:
    """``"cnn"`` when the target layer is a convolution, ``"text"`` for a text encoder, ``"recurrent"`` for
    a module with an LSTM, GRU or RNN, else None."""
    if modality == "text":
        return "text"
    if any(isinstance(module, nn.RNNBase) for module in adapter.module.modules()):
        return "recurrent"
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
    if family in ("text", "recurrent") and recommended is None:
        model = "a sentence encoder (MiniLM)" if family == "text" else "a recurrent speaker encoder (Resemblyzer)"
        return (
            f" On {model} the project's study found no target layer, SimCLR, KL or projection setting under which "
            f"a gradient block beat its control ({PAGE}): keep the embedding."
        )
    return ""
