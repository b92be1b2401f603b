"""A fitted HNSWTransformer on disk: hnswlib's own index file and a JSON of its parameters and fitted state."""

from __future__ import annotations

import json
import os
from pathlib import Path

import hnswlib
import numpy as np

from ._queries import SPACES

__all__ = ["FILE_FORMAT", "INDEX_FILE", "PARAMETERS_FILE", "load", "save"]

INDEX_FILE, PARAMETERS_FILE, FILE_FORMAT = "hnsw.bin", "hnsw.json", 1


def save(estimator, folder) -> None:
    """Write the fitted ``estimator`` to ``folder`` (see ``HNSWTransformer.save``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    params = estimator.get_params()
    if not isinstance(params["random_state"], int):
        params["random_state"] = None
    names = getattr(estimator, "feature_names_in_", None)
    described = {
        "format": FILE_FORMAT,
        "params": params,
        "n_samples_fit": int(estimator.n_samples_fit_),
        "n_features_in": int(estimator.n_features_in_),
        "fit_dtype": np.dtype(estimator._fit_dtype).name,
        "feature_names_in": None if names is None else [str(name) for name in names],
    }
    estimator.index_.save_index(os.fspath(folder / INDEX_FILE))
    (folder / PARAMETERS_FILE).write_text(json.dumps(described, indent=1) + "\n", encoding="utf-8")


def load(cls, folder):
    """The fitted ``cls`` saved in ``folder`` (see ``HNSWTransformer.load``)."""
    folder = Path(folder)
    try:
        described = json.loads((folder / PARAMETERS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{os.fspath(folder)!r} holds no saved HNSWTransformer ({error}).") from error
    if described.get("format") != FILE_FORMAT:
        raise ValueError(f"{os.fspath(folder)!r} holds format {described.get('format')!r}, not {FILE_FORMAT}.")
    estimator = cls(**described["params"])
    estimator._validate_params()
    n_samples, dim = described["n_samples_fit"], described["n_features_in"]
    index = hnswlib.Index(space=SPACES[estimator.metric], dim=dim)
    index.load_index(os.fspath(folder / INDEX_FILE), max_elements=n_samples)
    if index.get_current_count() != n_samples:
        raise ValueError(f"{os.fspath(folder)!r}: the index holds {index.get_current_count()} rows, not {n_samples}.")
    index.set_ef(int(estimator.ef))
    estimator.index_, estimator.n_samples_fit_, estimator.n_features_in_ = index, n_samples, dim
    estimator._fit_dtype, estimator._n_features_out = np.dtype(described["fit_dtype"]), n_samples
    if described["feature_names_in"] is not None:
        estimator.feature_names_in_ = np.asarray(described["feature_names_in"], dtype=object)
    return estimator
