"""What several protocols share: the classification scores they report and a parameter check."""

from __future__ import annotations

import numbers
import warnings

from sklearn.metrics import accuracy_score, balanced_accuracy_score


def classification_scores(y_true, y_pred) -> dict[str, float]:
    """``{"top1": accuracy, "mean_per_class": mean of the per-class recalls}``, as fractions in [0, 1]."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return {
            "top1": float(accuracy_score(y_true, y_pred)),
            "mean_per_class": float(balanced_accuracy_score(y_true, y_pred)),
        }


def check_positive_int(name: str, value) -> None:
    """Raise a ValueError naming ``name`` unless ``value`` is an int >= 1 (``bool`` excluded)."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
