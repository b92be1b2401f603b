"""InContextSegmenter: semantic segmentation from annotated examples, without training (glue only)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from .._utils.cloning import clone_sharing
from .._utils.sklearn_compat import StrOptions
from .._utils.validation import int_range, real_range
from .bank import PatchMemoryBank
from .features import DenseFungiTransformer, combine_blocks
from .index import ALGORITHMS
from .labels import as_label_maps
from .metrics import mean_iou
from .propagation import PATCH_LABELS, fill_memory_bank, pixel_scores, support_classes

__all__ = ["InContextSegmenter"]


class InContextSegmenter(BaseEstimator):
    """Segment images by label propagation from annotated support images (the HummingBird protocol).

    ``fit`` stores every patch of the support images in a memory bank: its
    dense feature (:class:`DenseFungiTransformer`) and its label distribution
    (the fraction of its pixels in each class, or the majority class). For a
    query image, each patch takes its ``n_neighbors`` most similar bank
    patches, weighs them by ``softmax(cosine / temperature)`` and averages their
    label distributions; the class scores are upsampled bilinearly to the
    image's pixels. Nothing is trained.

    Parameters
    ----------
    transformer : DenseFungiTransformer, or a backbone
        The patch features, as a :class:`DenseFungiTransformer` (unfitted; a
        clone of it is fitted on the support images, whose patches are its
        negatives), so that a grid search reaches its settings as
        ``transformer__<param>`` (``transformer__features``,
        ``transformer__latent_dim``...). Anything a
        :class:`DenseFungiTransformer` takes as its ``backbone`` (a spec
        string such as ``"timm:vit_small_patch16_224.dino"``, a module, an
        adapter) stands for ``DenseFungiTransformer(backbone)`` with its
        defaults (unseeded: pass a transformer with ``random_state`` for
        repeatable results).
    n_neighbors : int, default=30
    temperature : float, default=0.02
        Temperature of the softmax over the neighbours' cosine similarities.
    patch_labels : {"soft", "majority"}, default="soft"
        A bank patch's label: the class fractions of its pixels, or the most
        frequent class (one-hot).
    ignore_index : int or None, default=255
        Pixels with this label count nowhere: not in the bank's label
        fractions (a patch of ignored pixels only is left out) and not in
        :meth:`score`. It may be negative (``-1``); the class ids are any
        other int64 >= 0, however large (``2**40``), kept as they are in
        ``classes_`` and in the predictions.
    algorithm : {"auto", "exact", "hnsw"}, default="auto"
        Search of the memory bank: exact up to 10,000 patches with ``"auto"``,
        hnswlib (:class:`~skfungi.HNSWTransformer`) above. (The transformer's
        own ``algorithm`` searches its negatives.)
    ef_construction : int, default=200
        hnswlib's build setting for the memory bank: 64 builds about 4x
        faster (a bank of a million patches in about 20 minutes on one CPU
        core), with a slightly worse graph.

    Attributes
    ----------
    transformer_ : DenseFungiTransformer
        Fitted on the support images (their patches are the negatives).
    memory_bank_ : PatchMemoryBank
    classes_ : ndarray of int
        The class ids found in the support masks (``ignore_index`` excluded).

    Notes
    -----
    Memory: per bank patch, ``4 d + 8 M + 12`` bytes of hnswlib index
    (``d = n_features_out_`` of the transformer, ``M = 16``; the upper layers
    add about ``1 / M`` of it) plus ``4 n_classes`` bytes of labels: about
    3.5 GB per million patches for dense FUNGI on a ViT-S/16 (``d = 768``) and
    21 classes.

    Examples
    --------
    >>> import torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> from skfungi.dense import DenseFungiTransformer, InContextSegmenter, make_segmentation_scenes
    >>> images, masks = make_segmentation_scenes(6, objects="digits", image_size=32, random_state=0)
    >>> _ = torch.manual_seed(0)
    >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, num_classes=0)
    >>> seg = InContextSegmenter(DenseFungiTransformer(vit, random_state=0), n_neighbors=5)
    >>> seg = seg.fit(images[:4], masks[:4])
    >>> seg.predict(images[4:]).shape
    (2, 32, 32)
    >>> 0.0 <= seg.score(images[4:], masks[4:]) <= 1.0
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        "transformer": [DenseFungiTransformer, *DenseFungiTransformer._parameter_constraints["backbone"]],
        "n_neighbors": [int_range(1)],
        "temperature": [real_range(0, None)],
        "patch_labels": [StrOptions(set(PATCH_LABELS))],
        "ignore_index": [int_range(None), None],
        "algorithm": [StrOptions(set(ALGORITHMS))],
        "ef_construction": [int_range(1)],
    }

    def __init__(
        self,
        transformer,
        *,
        n_neighbors=30,
        temperature=0.02,
        patch_labels="soft",
        ignore_index=255,
        algorithm="auto",
        ef_construction=200,
    ):
        self.transformer = transformer
        self.n_neighbors = n_neighbors
        self.temperature = temperature
        self.patch_labels = patch_labels
        self.ignore_index = ignore_index
        self.algorithm = algorithm
        self.ef_construction = ef_construction

    def __sklearn_clone__(self):
        return clone_sharing(self, ("transformer",))  # a backbone given as the transformer is never copied

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.target_tags.required = True
        tags.target_tags.single_output = False
        return tags

    def fit(self, X, y):
        """Fill the memory bank with the patches of the support images ``X`` and their masks ``y``.

        Parameters
        ----------
        X : images
            An ``(N, H, W, C)`` array, an ``(N, C, H, W)`` tensor, or a list of
            PIL images, file paths or arrays (sizes may differ).
        y : label maps
            One ``(H, W)`` map of class ids per image, of the image's size: an
            ``(N, H, W)`` integer array or a list of arrays, palette / grey PIL
            images or paths to label images (see ``skfungi.dense.labels``).

        Returns
        -------
        self : InContextSegmenter
        """
        self._validate_params()
        given = self.transformer
        transformer = clone(given) if isinstance(given, DenseFungiTransformer) else DenseFungiTransformer(given)
        transformer.fit(X)
        samples = transformer.backbone_.as_samples(X, estimator=transformer, reset=False)
        masks = as_label_maps(y, len(samples), self.ignore_index)
        classes = support_classes(masks, self.ignore_index)
        bank = PatchMemoryBank(
            self.n_neighbors,
            self.temperature,
            self.algorithm,
            ef_construction=self.ef_construction,
            random_state=transformer.seed_,
        )
        fill_memory_bank(bank, _checked_maps(transformer, X, samples, masks), masks, classes, self.patch_labels)
        if bank.n_patches_ < self.n_neighbors:
            raise ValueError(
                f"the support masks label {bank.n_patches_} patches, fewer than n_neighbors={self.n_neighbors}."
            )
        self.transformer_ = transformer
        self.memory_bank_ = bank
        self.classes_ = classes
        return self

    def predict_proba(self, X):
        """Class scores per pixel: ``(N, H, W, n_classes)`` float32 (one array per image if sizes differ).

        The scores of a pixel sum to 1; column ``c`` is the class ``classes_[c]``.
        """
        return _stack_if_same_shape(list(self._iter_scores(X)))

    def predict(self, X):
        """Label maps at the images' resolution: ``(N, H, W)`` class ids (a list of arrays if sizes differ)."""
        return _stack_if_same_shape([self.classes_[scores.argmax(axis=-1)] for scores in self._iter_scores(X)])

    def score(self, X, y) -> float:
        """Mean IoU of the predictions on ``X`` against the label maps ``y`` (``ignore_index`` left out).

        Counts are summed over all pixels of all images before the IoU of each
        class is taken (see :func:`~skfungi.dense.mean_iou`).

        Returns
        -------
        miou : float
            A fraction in [0, 1], as every scikit-learn ``score``; the
            segmentation tables of the docs give ``100 * miou`` (mIoU in %).
        """
        check_is_fitted(self)
        masks = as_label_maps(y, ignore_index=self.ignore_index)
        predictions = (self.classes_[scores.argmax(axis=-1)] for scores in self._iter_scores(X))
        return mean_iou(masks, predictions, ignore_index=self.ignore_index)

    # -- internals ------------------------------------------------------------

    def _iter_scores(self, X):
        """``(H, W, n_classes)`` upsampled class scores of each image, in order."""
        check_is_fitted(self)
        samples = self.transformer_.backbone_.as_samples(X, estimator=self.transformer_, reset=False)
        for index, feature_map in enumerate(_feature_maps(self.transformer_, X)):
            yield pixel_scores(self.memory_bank_, feature_map, tuple(samples[index].shape[-2:]))


def _feature_maps(transformer: DenseFungiTransformer, X):
    """``(h, w, d)`` patch features of each image of ``X``, in order."""
    for _, _, blocks in transformer.iter_blocks(X):
        yield from combine_blocks(blocks, transformer.blocks_)


def _checked_maps(transformer: DenseFungiTransformer, X, samples, masks):
    """The feature maps of ``X``, each after checking that its mask has the image's size."""
    for index, feature_map in enumerate(_feature_maps(transformer, X)):
        _check_mask_size(masks[index], samples[index], index)
        yield feature_map


def _check_mask_size(mask: np.ndarray, image: torch.Tensor, index: int) -> None:
    if tuple(mask.shape) != tuple(image.shape[-2:]):
        raise ValueError(f"mask {index} has shape {mask.shape}, but image {index} is {tuple(image.shape[-2:])}.")


def _stack_if_same_shape(arrays: list[np.ndarray]):
    if len({array.shape for array in arrays}) == 1:
        return np.stack(arrays)
    return arrays
