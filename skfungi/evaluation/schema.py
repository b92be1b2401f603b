"""The schema of an evaluation's JSON document, and a check of a document against it.

:data:`SCHEMA` is the document's shape, written as plain Python: a type, a
dict of fields (every one required), ``ListOf(...)``, ``MapOf(...)`` (string
keys) or ``Optional(...)`` (``null`` allowed). Accuracies and gains are
fractions in [0, 1] (the tables print them as percentages); times are in
seconds, except ``ms_per_sample``. The documentation page "Does FUNGI help on
your data?" describes every field; :func:`validate_report` checks a document.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

__all__ = ["SCHEMA", "SCHEMA_VERSION", "ListOf", "MapOf", "Optional", "validate_report"]


@dataclass(frozen=True)
class ListOf:
    item: object


@dataclass(frozen=True)
class MapOf:
    value: object


@dataclass(frozen=True)
class Optional:
    value: object


Number = numbers.Real
FEATURES = ListOf(str)
COMPARISON = {
    "reference": FEATURES,
    "gain": Number,
    "gain_std": Number,
    "wins": int,
    "n_splits": int,
    "spread": Number,
    "verdict": str,
}
ROW = {
    "features": FEATURES,  # block names, concatenated in this order
    "label": str,
    "gradient": bool,  # holds at least one gradient block
    "requested": bool,  # a row asked for, not only a control or an alternative
    "mean": Number,  # the first protocol's primary metric, mean over splits
    "std": Number,
    "scores": MapOf(MapOf(ListOf(Number))),  # protocol -> metric -> one score per split
    "ms_per_sample": Number,
    "cost_ratio": Number,  # ms_per_sample / the embedding's
    "control": Optional(FEATURES),  # the matched no-gradient control (gradient sets)
    "gain": Optional(Number),  # against the control, paired over splits
    "gain_std": Optional(Number),
    "wins": Optional(int),
    "alternative": Optional(FEATURES),  # the best no-gradient set of equal or lower cost
    "alternative_gain": Optional(Number),
    "alternative_gain_std": Optional(Number),
    "alternative_wins": Optional(int),
    "verdict": Optional(str),  # GAIN, LOSS or within spread, on the stronger comparison
    "verdicts": MapOf(str),  # per protocol
    "comparisons": MapOf(MapOf(COMPARISON)),  # protocol -> "control" / "alternative" -> comparison
    "disagreement": Optional(str),  # the protocols' verdicts, when they differ
}

SCHEMA_VERSION = "skfungi.evaluation/1"
SCHEMA = {
    "schema": str,  # SCHEMA_VERSION
    "skfungi_version": str,
    "data": {
        "name": str,
        "modality": str,
        "n_samples": int,
        "n_pool": int,
        "n_fit": int,
        "n_classes": int,
        "digest": str,
        "fit_digest": str,
    },
    "settings": {
        "skfungi_version": str,
        "backbone": str,
        "layer": str,
        "losses": ListOf(str),
        "views": str,
        "projection": str,
        "projection_dim": str,
        "random_state": int,
        "feature_sets": ListOf(FEATURES),
        "protocols": ListOf(str),
        "pca": str,
        "test_size": Optional(Number),
        "train_size": Optional(Number),
        "batch_size": int,
        "precision": str,
    },
    "protocols": ListOf(str),  # the first is the table's, the picture's and the recommendation's
    "metrics": MapOf(str),  # protocol -> its primary metric ("top1", or "ami" for kmeans)
    "splits": ListOf({"index": int, "seed": int, "n_train": int, "n_test": int, "test_digest": str}),
    "blocks": ListOf(
        {"name": str, "width": int, "fit_seconds": Number, "ms_per_sample": Number, "stored": bool, "key": str}
    ),
    "rows": ListOf(ROW),
    "recommendation": str,
    "recommended": Optional(FEATURES),
    "estimate": Optional(MapOf(object)),
    "timing": MapOf(Number),
}


def _check(value, shape, where: str) -> None:
    if isinstance(shape, Optional):
        if value is not None:
            _check(value, shape.value, where)
    elif isinstance(shape, ListOf):
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list, got {type(value).__name__}.")
        for index, item in enumerate(value):
            _check(item, shape.item, f"{where}[{index}]")
    elif isinstance(shape, MapOf):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object, got {type(value).__name__}.")
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: key {key!r} is not a string.")
            _check(item, shape.value, f"{where}.{key}")
    elif isinstance(shape, dict):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object, got {type(value).__name__}.")
        missing = [key for key in shape if key not in value]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}.")
        for key, item_shape in shape.items():
            _check(value[key], item_shape, f"{where}.{key}")
    elif shape is object:
        return
    elif shape is int or shape is bool:
        if not isinstance(value, shape) or (shape is int and isinstance(value, bool)):
            raise ValueError(f"{where}: expected {shape.__name__}, got {value!r}.")
    elif shape is Number:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{where}: expected a number, got {value!r}.")
    elif not isinstance(value, shape):
        raise ValueError(f"{where}: expected {shape.__name__}, got {type(value).__name__}.")


def validate_report(document: dict) -> None:
    """Raise ``ValueError`` naming the first field where ``document`` departs from :data:`SCHEMA`.

    Beyond the shapes: the schema version is known, every per-split score
    list has one value per split, and every protocol of ``protocols`` is
    scored in every row.
    """
    version = document.get("schema") if isinstance(document, dict) else None
    if version is not None and version != SCHEMA_VERSION:  # another version's fields differ: say so, not the first one
        raise ValueError(f"report.schema: unknown version {version!r} (this skfungi reads {SCHEMA_VERSION}).")
    _check(document, SCHEMA, "report")
    n_splits = len(document["splits"])
    for index, row in enumerate(document["rows"]):
        for protocol in document["protocols"]:
            if protocol not in row["scores"]:
                raise ValueError(f"report.rows[{index}].scores: protocol {protocol!r} is missing.")
            for metric, values in row["scores"][protocol].items():
                if len(values) != n_splits:
                    raise ValueError(
                        f"report.rows[{index}].scores.{protocol}.{metric}: {len(values)} values for {n_splits} splits."
                    )
