"""
# Segmentation in context: InContextSegmenter

`InContextSegmenter` segments images from a few annotated examples, without
any training: every patch of the support images goes into a memory bank with
its label, and each patch of a query image takes the softmax-weighted vote of
its nearest bank patches. With `features="fungi"` a patch's feature is its
token joined with its own self-supervised gradient (dense FUNGI).

A tiny random ViT on synthetic scenes (digits pasted on photographs) keeps
this example to seconds: the picture shows the API, not what FUNGI achieves
(see the user guide's "Segmentation in context" for a pretrained model).
"""

import matplotlib.pyplot as plt
import torch
from timm.models.vision_transformer import VisionTransformer

from skfungi import DenseFungiTransformer, InContextSegmenter
from skfungi.dense import make_segmentation_scenes

images, masks = make_segmentation_scenes(24, objects="digits", image_size=64, object_size=(0.35, 0.6), random_state=0)
support_images, support_masks = images[:20], masks[:20]
query_images, query_masks = images[20:], masks[20:]

torch.manual_seed(0)  # the ViT's random weights
vit = VisionTransformer(img_size=64, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=0)

# %%
# ## Fit on annotated scenes, predict label maps
#
# `fit` takes one label map per image (class ids, 255 ignored); `predict`
# returns label maps at each query's own resolution and `score` the mean IoU.

segmenter = InContextSegmenter(DenseFungiTransformer(vit, features="fungi", random_state=0), n_neighbors=10)
segmenter.fit(support_images, support_masks)
predicted = segmenter.predict(query_images)
print("label maps:", predicted.shape, "classes:", segmenter.classes_.tolist())
print(f"mean IoU, fungi features:     {segmenter.score(query_images, query_masks):.3f}")
embedding = InContextSegmenter(DenseFungiTransformer(vit, features="embedding", random_state=0), n_neighbors=10)
embedding.fit(support_images, support_masks)
print(f"mean IoU, embedding features: {embedding.score(query_images, query_masks):.3f}")

# %%
# ## Predicted masks next to the truth

fig, axes = plt.subplots(3, 4, figsize=(8, 6))
for column in range(4):
    for row, (title, picture) in enumerate(
        [("scene", query_images[column]), ("truth", query_masks[column]), ("predicted", predicted[column])]
    ):
        axis = axes[row, column]
        axis.imshow(picture, **({} if row == 0 else {"cmap": "tab20", "vmin": 0, "vmax": 19}))
        axis.set_axis_off()
        if column == 0:
            axis.set_title(title, loc="left")
fig.tight_layout()
plt.show()
