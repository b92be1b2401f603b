"""Dense FUNGI: features for every patch of an image, and in-context semantic segmentation.

:class:`DenseFungiTransformer` turns images into a grid of per-patch features
(each patch token with its own projected self-supervised gradient);
:class:`InContextSegmenter` segments query images by nearest-neighbour label
propagation from a memory bank of annotated support patches (the HummingBird
protocol), without any training. :func:`make_segmentation_scenes` builds a
synthetic segmentation set from offline data, and the readers take Pascal VOC
and ADE20K folders.
"""

from .bank import PatchMemoryBank
from .features import FEATURE_SETS, DenseFungiTransformer, combine_blocks
from .metrics import mean_iou
from .readers import VOC_CLASSES, LabelMapFiles, load_ade20k_segmentation, load_voc_segmentation
from .scenes import SCENE_CLASSES, make_segmentation_scenes
from .segmenter import InContextSegmenter

__all__ = [
    "FEATURE_SETS",
    "SCENE_CLASSES",
    "VOC_CLASSES",
    "DenseFungiTransformer",
    "InContextSegmenter",
    "LabelMapFiles",
    "PatchMemoryBank",
    "combine_blocks",
    "load_ade20k_segmentation",
    "load_voc_segmentation",
    "make_segmentation_scenes",
    "mean_iou",
]
