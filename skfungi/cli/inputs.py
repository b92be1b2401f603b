"""What ``skfungi extract`` and ``skfungi evaluate`` read: a folder of images or of audio clips, a CSV /
Parquet table of texts, a ``.npy`` array or a ``.npz`` file of arrays.

Every source is an :class:`InputSource`: a fixed, ordered list of samples
with a name each (a file's relative path, or a row number), optional labels
(class sub-folders, or a label column), a fingerprint of what was read (so a
resumed extraction can tell that its input changed), a ``load`` that
decodes any subset of samples, reporting the ones that cannot be read rather
than failing on them, and an ``unreadable`` check of the whole input that the
command runs before it writes anything: every image file's header, every
text cell, and every value of a ``.npy`` array (read in slices of
``CHECK_BYTES``, so an array larger than memory can be checked).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CommandError

__all__ = ["AUDIO_EXTENSIONS", "IMAGE_EXTENSIONS", "NPZ_LABEL_KEYS", "NPZ_SAMPLE_KEYS", "InputError", "InputSource",
           "read_input"]  # fmt: skip

CHECK_BYTES = 64 * 2**20
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".pbm", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")
AUDIO_EXTENSIONS = (".aif", ".aiff", ".flac", ".ogg", ".wav")
TABLE_EXTENSIONS = (".csv", ".parquet")
# the arrays of a .npz input: its samples and, optionally, their labels (the first key found)
NPZ_SAMPLE_KEYS = ("X", "images", "texts")
NPZ_LABEL_KEYS = ("y", "labels")
_IMAGE_VALUES = "uint8 (0-255), uint16 (0-65535), bool or floats in [0, 1]"


class InputError(CommandError):
    """The input cannot be used as given (the message says why and what to do)."""


@dataclass
class InputSource:
    """An ordered collection of samples of one modality.

    Attributes
    ----------
    kind : str
        ``"folder"``, ``"table"`` or ``"array"``.
    modality : str
        ``"image"``, ``"text"`` or ``"audio"`` (a folder of clips: each sample
        is a ``(waveform, sample_rate)`` pair, the channels of a clip averaged).
    names : ndarray of str
        One name per sample: the path relative to the folder, or the row number.
    labels : ndarray of str or None
        Class sub-folder names, or the label column; None without labels.
    fingerprint : dict
        What identifies the input (paths, sizes, modification times).
    loader : callable
        ``loader(indices) -> (samples, kept, failed)``, see :meth:`load`.
    checker : callable
        ``checker(progress) -> failed``, see :meth:`unreadable`.
    ignored_files : int
        Files of a folder that are not images (by extension), never read.
    """

    kind: str
    modality: str
    names: np.ndarray
    labels: np.ndarray | None
    fingerprint: dict
    loader: Callable
    checker: Callable
    ignored_files: int = 0

    def __len__(self) -> int:
        return len(self.names)

    def load(self, indices) -> tuple[list, list[int], list[tuple[int, str]]]:
        """Decode the samples at ``indices``.

        Returns
        -------
        samples : list
            The readable samples, in order.
        kept : list of int
            Their indices.
        failed : list of (int, str)
            Index and reason of every sample that could not be read.
        """
        return self.loader(indices)

    def unreadable(self, progress: Callable[[int], object] | None = None) -> list[tuple[int, str]]:
        """Index and reason of every sample found unreadable by a check of the whole input, without decoding it.

        Image files are opened (their headers read), text cells checked to be
        texts, and every value of an array checked (dtype, finiteness,
        range). ``progress(n)`` is called as ``n`` more samples are checked.

        Raises
        ------
        InputError
            If an array holds values that no image may hold (its samples
            cannot be skipped one by one).
        """
        return self.checker(progress or (lambda n: None))

    def describe(self, failed: list[tuple[int, str]]) -> str:
        """``'name' (reason), ...`` for samples that could not be read."""
        return ", ".join(f"{str(self.names[index])!r} ({reason})" for index, reason in failed)

    def digest(self) -> str:
        """A short hash of the fingerprint."""
        text = json.dumps(self.fingerprint, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def read_input(path, *, text_column: str = "text", label_column: str | None = None, exclude: tuple = ()) -> InputSource:
    """Open ``path`` as an input source: a folder (of images, or of audio clips), a ``.csv`` / ``.parquet``
    table, a ``.npy`` array or a ``.npz`` file (samples under one of :data:`NPZ_SAMPLE_KEYS`, labels under
    one of :data:`NPZ_LABEL_KEYS`, or ``label_column``).

    ``exclude`` lists paths never to be read as samples (the output and its
    partial-results folder, when they lie inside an input folder).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"input {os.fspath(path)!r} does not exist.")
    if path.is_dir():
        return _folder(path, exclude)
    suffix = path.suffix.lower()
    if suffix in TABLE_EXTENSIONS:
        return _text_table(path, text_column, label_column)
    if suffix == ".npy":
        return _array(path)
    if suffix == ".npz":
        return _npz(path, label_column)
    raise InputError(
        f"input {os.fspath(path)!r} is not a folder of images or audio clips, a .csv / .parquet table of texts, "
        "a .npy array or a .npz file."
    )


# -- a folder of images or audio clips -----------------------------------------------------


def _folder(folder: Path, exclude: tuple) -> InputSource:
    excluded = {Path(item).resolve() for item in exclude}
    images, clips, ignored = [], [], 0
    for root, directories, names in os.walk(folder):
        root_path = Path(root)
        # hidden entries (.DS_Store, .git, ...) and the extraction's own files are never samples
        directories[:] = sorted(
            d for d in directories if not d.startswith(".") and (root_path / d).resolve() not in excluded
        )
        for name in names:
            file = root_path / name
            if name.startswith(".") or file.resolve() in excluded:
                continue
            if file.suffix.lower() in IMAGE_EXTENSIONS:
                images.append(file.relative_to(folder))
            elif file.suffix.lower() in AUDIO_EXTENSIONS:
                clips.append(file.relative_to(folder))
            else:
                ignored += 1
    if images and clips:
        raise InputError(
            f"input folder {os.fspath(folder)!r} holds both images ({images[0].as_posix()!r}) and audio clips "
            f"({clips[0].as_posix()!r}); give a folder of one kind."
        )
    if not images and not clips:
        raise InputError(
            f"input folder {os.fspath(folder)!r} holds no image files (looked for {', '.join(IMAGE_EXTENSIONS)}) "
            f"and no audio clips ({', '.join(AUDIO_EXTENSIONS)})."
        )
    files = sorted(images or clips, key=lambda relative: relative.as_posix())
    what = "images" if images else "clips"
    nested = [len(relative.parts) > 1 for relative in files]
    if any(nested) and not all(nested):
        top = next(relative for relative, inside in zip(files, nested, strict=True) if not inside)
        raise InputError(
            f"input folder {os.fspath(folder)!r} mixes {what} at its top level (e.g. {top.as_posix()!r}) with "
            f"class sub-folders; put every file in a class sub-folder, or none of them."
        )
    labels = np.asarray([relative.parts[0] for relative in files]) if all(nested) else None
    names = np.asarray([relative.as_posix() for relative in files])
    stats = [(folder / relative).stat() for relative in files]
    fingerprint = {
        "kind": "folder",
        "path": os.fspath(folder.resolve()),
        "files": [[name, stat.st_size, stat.st_mtime_ns] for name, stat in zip(names.tolist(), stats, strict=True)],
    }
    if clips:
        from .clips import check_clips as checker
        from .clips import load_clips as loader
    else:
        loader, checker = _load_images, _check_images
    return InputSource(
        "folder",
        "image" if images else "audio",
        names,
        labels,
        fingerprint,
        lambda indices: loader(folder, names, indices),
        lambda progress: checker(folder, names, progress),
        ignored,
    )


def _load_images(folder: Path, names: np.ndarray, indices) -> tuple[list, list[int], list[tuple[int, str]]]:
    from PIL import Image

    from ..inputs.images import decode_image, pil_array

    samples, kept, failed = [], [], []
    for index in indices:
        try:
            with Image.open(folder / names[index]) as image:
                image.load()
                values = pil_array(image, "the image")  # 16-bit stays 16-bit: the library scales it by its depth
            decode_image(values, "the image")  # the library's checks here, so that a file they refuse is named
            samples.append(values)
            kept.append(int(index))
        except (OSError, TypeError, ValueError, Image.DecompressionBombError) as error:
            failed.append((int(index), f"{type(error).__name__}: {error}"))
    return samples, kept, failed


def _check_images(folder: Path, names: np.ndarray, progress) -> list[tuple[int, str]]:
    from PIL import Image

    from ..inputs.images import check_pil_image

    failed = []
    for index, name in enumerate(names):
        try:
            with Image.open(folder / name) as image:  # reads the header only
                check_pil_image(image, "the image")  # its mode says whether its range is known
        except (OSError, TypeError, ValueError, Image.DecompressionBombError) as error:
            failed.append((index, f"{type(error).__name__}: {error}"))
        progress(1)
    return failed


# -- a table of texts --------------------------------------------------------------------


def _text_table(path: Path, text_column: str, label_column: str | None) -> InputSource:
    import pandas as pd

    try:
        table = _read_parquet(path, text_column) if path.suffix.lower() == ".parquet" else _read_csv(path, text_column)
    except ImportError as error:
        raise InputError(f"cannot read {os.fspath(path)!r}: {error}") from error
    except (OSError, ValueError, NotImplementedError, pd.errors.ParserError) as error:  # NotImplemented: a cast
        raise InputError(f"cannot read {os.fspath(path)!r}: {error}") from error
    for role, column in (("text", text_column), ("label", label_column)):
        if column is not None and column not in table.columns:
            raise InputError(
                f"{os.fspath(path)!r} has no column {column!r} (its columns: {', '.join(map(str, table.columns))}); "
                f"name the {role} column with --{role}-column."
            )
    if len(table) == 0:
        raise InputError(f"{os.fspath(path)!r} has no rows.")
    texts = table[text_column].to_numpy(dtype=object)
    labels = None if label_column is None else _label_values(table[label_column])
    return InputSource(
        "table",
        "text",
        _row_names(len(table)),
        labels,
        _file_fingerprint(path, "table"),
        lambda indices: _load_texts(texts, text_column, indices),
        lambda progress: _load_texts(texts, text_column, range(len(texts)))[2],
    )


def _read_csv(path: Path, text_column: str):
    """The table of a CSV file, whose text column is read as strings (a cell "2024" is a text, not a number)."""
    import pandas as pd

    return pd.read_csv(path, dtype={text_column: str})


def _read_parquet(path: Path, text_column: str):
    """The table of a Parquet file, whose text column is cast to strings (missing cells stay missing)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if text_column in table.column_names:
        index = table.column_names.index(text_column)
        table = table.set_column(index, text_column, table.column(text_column).cast(pa.string()))
    return table.to_pandas()


def _label_values(column) -> np.ndarray:
    """A label column as it is when it holds numbers or booleans, else as strings (a fixed-width unicode array).

    Both are what every OUTPUT format holds (``.npz`` without pickling). A missing label is NaN in a
    column of numbers, an empty string in a column of strings.
    """
    values = column.to_numpy()
    if values.dtype.kind in "biuf":
        return values
    cells = column.astype(object).where(column.notna(), "")
    return np.asarray([str(cell) for cell in cells], dtype=str)


def _load_texts(texts: np.ndarray, column: str, indices) -> tuple[list, list[int], list[tuple[int, str]]]:
    samples, kept, failed = [], [], []
    for index in indices:
        text = texts[index]
        if isinstance(text, str):
            samples.append(text)
            kept.append(int(index))
        else:
            failed.append((int(index), f"column {column!r} holds {text!r}, not a text"))
    return samples, kept, failed


# -- a .npy array, a .npz file -------------------------------------------------------------


def _array(path: Path) -> InputSource:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read {os.fspath(path)!r} as a .npy array: {error}") from error
    return _array_source(path, array, None, "array")


def _npz(path: Path, label_key: str | None) -> InputSource:
    """A .npz file: its samples under one of :data:`NPZ_SAMPLE_KEYS` (or its only array), its labels under
    ``label_key`` (``--label-column``) or one of :data:`NPZ_LABEL_KEYS`."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.files)
            sample_key = next((key for key in NPZ_SAMPLE_KEYS if key in keys), keys[0] if len(keys) == 1 else None)
            if label_key is not None and label_key not in keys:
                raise InputError(f"{os.fspath(path)!r} has no array {label_key!r} (its arrays: {', '.join(keys)}).")
            label_key = label_key or next((key for key in NPZ_LABEL_KEYS if key in keys), None)
            if sample_key is None or sample_key == label_key:
                raise InputError(
                    f"{os.fspath(path)!r} holds the arrays {', '.join(keys) or 'none'}; name its samples "
                    f"{' or '.join(NPZ_SAMPLE_KEYS)} and its labels {' or '.join(NPZ_LABEL_KEYS)}."
                )
            array = archive[sample_key]
            labels = None if label_key is None else archive[label_key]
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read {os.fspath(path)!r} as a .npz file of arrays: {error}") from error
    if labels is not None:
        if labels.ndim != 1 or len(labels) != len(array):
            raise InputError(
                f"{os.fspath(path)!r}: the labels {label_key!r} have shape {labels.shape}; expected one label per "
                f"sample ({len(array)},)."
            )
        if labels.dtype.kind not in "biufUS":
            raise InputError(
                f"{os.fspath(path)!r}: the labels {label_key!r} are {labels.dtype}; give numbers or strings."
            )
        labels = labels.astype(str) if labels.dtype.kind == "S" else labels
    return _array_source(path, array, labels, "npz")


def _array_source(path: Path, array: np.ndarray, labels, kind: str) -> InputSource:
    if array.ndim == 1 and array.dtype.kind in "US":
        modality = "text"
    elif array.ndim in (3, 4) and array.dtype.kind in "buif":
        modality = "image"
    else:
        raise InputError(
            f"{os.fspath(path)!r} holds a {array.ndim}-D {array.dtype} array; the command line takes images "
            f"((N, H, W) or (N, H, W, C), {_IMAGE_VALUES}) or a 1-D array of texts. Tabular rows "
            "need a tabular backbone: use the Python API (skfungi.TabularBackbone)."
        )
    if len(array) == 0:
        raise InputError(f"{os.fspath(path)!r} holds no samples.")

    def load(indices):
        rows = np.asarray(array[list(indices)])  # a copy: the memory map is never handed out
        return ([str(text) for text in rows] if modality == "text" else rows), [int(i) for i in indices], []

    return InputSource(
        "array",
        modality,
        _row_names(len(array)),
        labels,
        _file_fingerprint(path, kind),
        load,
        lambda progress: _check_array(path, array, progress) if modality == "image" else [],
    )


def _check_array(path: Path, array: np.ndarray, progress) -> list[tuple[int, str]]:
    """Refuse an image array whose dtype or values no image may have, naming the first offending sample."""
    from ..inputs.images import image_scale

    try:
        depth = image_scale(array.dtype, repr(os.fspath(path)))  # the library's rule: uint8, uint16, bool, floats
    except TypeError as error:
        raise InputError(str(error)) from error
    if depth is not None:  # integers of a known depth: every value is an image's
        progress(len(array))
        return []
    step = max(1, CHECK_BYTES // max(1, array[0].nbytes))
    for start in range(0, len(array), step):
        values = np.asarray(array[start : start + step])
        for problem, bad in (
            ("NaN or infinite values", ~np.isfinite(values)),
            ("values outside [0, 1]", (values < 0) | (values > 1)),
        ):
            rows = np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))
            if len(rows):
                raise InputError(
                    f"{os.fspath(path)!r} holds {problem} (first at sample {start + int(rows[0])}); images must be "
                    f"{_IMAGE_VALUES}."
                )
        progress(len(values))
    return []


def _row_names(n_rows: int) -> np.ndarray:
    return np.arange(n_rows).astype(str)


def _file_fingerprint(path: Path, kind: str) -> dict:
    stat = path.stat()
    return {"kind": kind, "path": os.fspath(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
