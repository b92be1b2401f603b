"""A fitted HNSWTransformer on disk: hnswlib's own index file and a JSON of its parameters and fitted state."""

from __future__ import annotations

import json
import os
import struct
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
    if not isinstance(described, dict) or described.get("format") != FILE_FORMAT:
        found = described.get("format") if isinstance(described, dict) else type(described).__name__
        raise ValueError(f"{os.fspath(folder / PARAMETERS_FILE)!r} holds format {found!r}, not {FILE_FORMAT}.")
    missing = [key for key in _DESCRIBED if key not in described]
    if missing:
        raise ValueError(
            f"{os.fspath(folder / PARAMETERS_FILE)!r} lacks {', '.join(missing)}: it was not written by "
            "HNSWTransformer.save."
        )
    try:
        estimator = cls(**described["params"])
    except TypeError as error:  # parameters that are not a dict, or of another estimator
        raise ValueError(f"{os.fspath(folder / PARAMETERS_FILE)!r} holds other parameters: {error}.") from error
    estimator._validate_params()
    n_samples, dim = described["n_samples_fit"], described["n_features_in"]
    path = folder / INDEX_FILE
    _check_vector_size(path, dim)
    index = hnswlib.Index(space=SPACES[estimator.metric], dim=dim)
    try:
        index.load_index(os.fspath(path), max_elements=n_samples)
    except RuntimeError as error:  # hnswlib names neither the file nor what is wrong with it
        raise ValueError(f"{os.fspath(path)!r} is not an hnswlib index that can be read: {error}.") from error
    if index.get_current_count() != n_samples:
        raise ValueError(f"{os.fspath(folder)!r}: the index holds {index.get_current_count()} rows, not {n_samples}.")
    index.set_ef(int(estimator.ef))
    estimator.index_, estimator.n_samples_fit_, estimator.n_features_in_ = index, n_samples, dim
    estimator._fit_dtype, estimator._n_features_out = np.dtype(described["fit_dtype"]), n_samples
    if described["feature_names_in"] is not None:
        estimator.feature_names_in_ = np.asarray(described["feature_names_in"], dtype=object)
    return estimator


_DESCRIBED = ("params", "n_samples_fit", "n_features_in", "fit_dtype", "feature_names_in")


def _check_vector_size(path: Path, dim: int) -> None:
    """Refuse an index file whose vectors are not ``dim`` float32s: hnswlib loads one of another width without
    a word and then answers with distances over the wrong bytes. Its header starts with six size_t: the level-0
    offset, the capacity, the count, the bytes per element, the label's offset and the vector's offset."""
    try:
        with open(path, "rb") as file:
            header = file.read(48)
    except OSError as error:
        raise ValueError(f"cannot read the index file {os.fspath(path)!r}: {error.strerror or error}.") from error
    if len(header) < 48:
        raise ValueError(f"{os.fspath(path)!r} is not an hnswlib index ({len(header)} bytes).")
    *_, label_offset, vector_offset = struct.unpack("<6Q", header)
    width = label_offset - vector_offset
    if not 0 < width < 2**40 or width % 4:
        raise ValueError(f"{os.fspath(path)!r} is not an hnswlib index (its header makes no sense).")
    if width != 4 * dim:
        raise ValueError(
            f"{os.fspath(path)!r} holds vectors of {width // 4} features, but "
            f"{PARAMETERS_FILE} says {dim}: the two files come from different indexes."
        )
