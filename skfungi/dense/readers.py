"""Readers for the folder layouts of the usual segmentation data sets (nothing is downloaded).

- Pascal VOC 2012: ``JPEGImages/<id>.jpg`` and ``SegmentationClass/<id>.png``
  (palette PNGs whose indices are the 21 class ids, 255 on object
  boundaries), with the split lists in ``ImageSets/Segmentation/<split>.txt``.
- ADE20K (``ADEChallengeData2016``) and folders laid out like it:
  ``images/<split>/<name>.jpg`` and ``annotations/<split>/<name>.png``, where
  0 means "other" and 1-150 the classes.

Both return the image paths (decoded when the estimator reaches them) and a
:class:`LabelMapFiles` sequence of label maps, which every skfungi dense
estimator takes as is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..inputs.lazy import LazySequence
from .labels import read_label_map

__all__ = ["VOC_CLASSES", "LabelMapFiles", "load_ade20k_segmentation", "load_voc_segmentation"]

VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class LabelMapFiles(LazySequence):
    """Label image files read on access into ``(H, W)`` int64 class ids.

    Parameters
    ----------
    paths : sequence of path-like
    reduce_zero_label : bool, default=False
        Map 0 to ``ignore_index`` and every other id ``c`` to ``c - 1`` (the
        ADE20K convention, where 0 is "other").
    ignore_index : int, default=255
    """

    def __init__(self, paths, reduce_zero_label: bool = False, ignore_index: int = 255):
        self.paths = [Path(path) for path in paths]
        self.reduce_zero_label = reduce_zero_label
        self.ignore_index = ignore_index
        super().__init__(self.paths, self._read)

    def _read(self, path: Path, index: int) -> np.ndarray:
        labels = read_label_map(path)
        if self.reduce_zero_label:
            labels = np.where(labels == 0, self.ignore_index, labels - 1)
        return labels


def load_voc_segmentation(root, split: str | None = "val") -> tuple[list[str], LabelMapFiles]:
    """Images and label maps of a Pascal VOC folder (``VOCdevkit/VOC2012`` or one laid out like it).

    Parameters
    ----------
    root : path-like
        The folder holding ``JPEGImages/`` and ``SegmentationClass/``.
    split : str or None, default="val"
        The ids listed in ``ImageSets/Segmentation/<split>.txt`` (``"train"``,
        ``"val"``, ``"trainval"``); ``None`` takes every mask in
        ``SegmentationClass/``, sorted by name.

    Returns
    -------
    images : list of str
        Image paths, in the split's order.
    masks : LabelMapFiles
        Class ids 0-20 (names in :data:`VOC_CLASSES`), 255 on boundaries.

    Raises
    ------
    FileNotFoundError
        If a folder, the split list or the image of a listed id is missing.
    """
    root = Path(root)
    images_dir, masks_dir = _folder(root, "JPEGImages"), _folder(root, "SegmentationClass")
    if split is None:
        ids = sorted(path.stem for path in masks_dir.glob("*.png"))
    else:
        listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not listing.is_file():
            raise FileNotFoundError(f"split list {listing} not found; pass split=None to take every mask.")
        ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    if not ids:
        raise FileNotFoundError(f"no segmentation masks found under {root}.")
    images = [_image_for(images_dir, name) for name in ids]
    masks = [masks_dir / f"{name}.png" for name in ids]
    _check_exist(masks)
    return [str(path) for path in images], LabelMapFiles(masks)


def load_ade20k_segmentation(
    root, split: str = "validation", reduce_zero_label: bool = True
) -> tuple[list[str], LabelMapFiles]:
    """Images and label maps of an ADE20K-style folder (``images/<split>/`` + ``annotations/<split>/``).

    Parameters
    ----------
    root : path-like
        The folder holding ``images/`` and ``annotations/`` (``ADEChallengeData2016``).
    split : str, default="validation"
        The subfolder (``"training"`` or ``"validation"`` in ADE20K).
    reduce_zero_label : bool, default=True
        ADE20K's convention: 0 ("other") becomes 255 (ignored) and the classes
        1-150 become 0-149.

    Returns
    -------
    images : list of str
        Image paths sorted by name; each annotation has the image's stem.
    masks : LabelMapFiles
    """
    root = Path(root)
    images_dir, masks_dir = _folder(root / "images", split), _folder(root / "annotations", split)
    masks = sorted(masks_dir.glob("*.png"))
    if not masks:
        raise FileNotFoundError(f"no annotations (*.png) in {masks_dir}.")
    images = [_image_for(images_dir, path.stem) for path in masks]
    return [str(path) for path in images], LabelMapFiles(masks, reduce_zero_label=reduce_zero_label)


def _folder(parent: Path, name: str) -> Path:
    folder = parent / name
    if not folder.is_dir():
        raise FileNotFoundError(f"expected a folder {folder}; is {parent} the data set's root?")
    return folder


def _image_for(folder: Path, stem: str) -> Path:
    for suffix in _IMAGE_SUFFIXES:
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"no image {stem}{{{','.join(_IMAGE_SUFFIXES)}}} in {folder} for its mask.")


def _check_exist(paths: list[Path]) -> None:
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} listed masks are missing, first: {missing[0]}.")
