"""
# FUNGI features, PCA and kNN

The paper's main protocol: FUNGI features of a frozen backbone, PCA fit on the
training features, then a k-nearest-neighbour vote. Here the backbone is a
tiny randomly initialised timm ViT and the images are scikit-learn's bundled
8x8 digits, so the script runs in seconds. With a pretrained ViT and real
images the code is the same: pass `"timm:vit_small_patch16_224.dino"` instead
of `vit` (see [Pretrained models](../../pretrained.md)).
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from timm.models.vision_transformer import VisionTransformer

from skfungi import FungiTransformer
from skfungi.datasets import load_digits_images
from skfungi.protocols import CappedPCA

torch.manual_seed(0)  # the ViT's random weights
vit = VisionTransformer(img_size=16, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=0)
X_train, y_train, X_test, y_test = load_digits_images(n_train=60, n_test=30)
print(X_train.shape, X_train.dtype)

# %%
# ## The pipeline
#
# `FungiTransformer` takes `(N, H, W)` or `(N, H, W, C)` uint8 arrays, tensors
# or lists of PIL images / file paths. Its output is the embedding followed by
# one projected gradient block per loss, each L2-normalised. `CappedPCA(512)`
# is the paper's `PCA(512)` that keeps fewer components when there are fewer
# training samples or features.

pipe = make_pipeline(
    FungiTransformer(vit, losses=("kl", "dino", "simclr"), random_state=0),
    CappedPCA(512),
    KNeighborsClassifier(n_neighbors=5),
)
pipe.fit(X_train, y_train)
# Random weights: the score shows the code runs, not what FUNGI gains on a pretrained model.
print(f"test accuracy: {pipe.score(X_test, y_test):.3f}")

# %%
# ## What the features look like
#
# One block of width E (the ViT's embedding width, 32 here) per part, named by
# `get_feature_names_out`.

fungi = pipe[0]
names = fungi.get_feature_names_out()
print(len(names), "features:", names[0], names[32], names[64], names[96])
features = fungi.transform(X_test[:12])
print(features.shape, features.dtype)
print("block norms of the first 3 images:", np.linalg.norm(features[:3].reshape(3, 4, 32), axis=2).round(3))

# %%
# The features of 12 test images, one row each: the embedding, then the
# projected gradient of each loss, every block of unit length.

blocks = ["embedding", "kl", "dino", "simclr"]
limit = np.abs(features).max()
fig, ax = plt.subplots(figsize=(7, 3))
ax.imshow(features, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
for edge in range(32, 128, 32):
    ax.axvline(edge - 0.5, color="black", linewidth=1.5)
ax.set_xticks([16 + 32 * index for index in range(4)], blocks)
ax.set_ylabel("test image")
ax.set_title("FUNGI features: one L2-normalised block per part")
fig.tight_layout()
plt.show()
