"""
# Clustering with k-means

FUNGI features are plain float32 arrays, so any scikit-learn clusterer takes
them. Here: `KMeans` on the PCA-reduced features of a tiny random ViT, scored
against the digit labels with the adjusted Rand index, and the same through
`skfungi.protocols.evaluate_kmeans`.
"""

import matplotlib.pyplot as plt
import torch
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score
from sklearn.pipeline import make_pipeline
from timm.models.vision_transformer import VisionTransformer

from skfungi import FungiTransformer
from skfungi.datasets import load_digits_images
from skfungi.protocols import CappedPCA, evaluate_kmeans

torch.manual_seed(0)  # the ViT's random weights
vit = VisionTransformer(img_size=16, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=0)
images, labels, _, _ = load_digits_images(n_train=80, n_test=10)

# %%
# ## A clustering pipeline
#
# `fit_predict` extracts the features, reduces them and clusters them in one
# call. KL and DINO need no training data (SimCLR would draw its negative bank
# from the images being clustered).

clustering = make_pipeline(
    FungiTransformer(vit, losses=("kl", "dino"), random_state=0),
    CappedPCA(512),
    KMeans(n_clusters=10, n_init=10, random_state=0),
)
clusters = clustering.fit_predict(images)
print("adjusted Rand index:", round(adjusted_rand_score(labels, clusters), 3))

# %%
# ## The paper's helper
#
# `evaluate_kmeans` does the PCA and k-means on given features and reports both
# the adjusted mutual information and the adjusted Rand index.

features = clustering[0].transform(images)
print({name: round(value, 3) for name, value in evaluate_kmeans(features, labels, random_state=0).items()})

# %%
# The clusters in the first two principal components of the features.

points = PCA(2).fit_transform(features)
fig, ax = plt.subplots(figsize=(4.5, 4))
ax.scatter(points[:, 0], points[:, 1], c=clusters, cmap="tab10", s=18)
ax.set_title("k-means clusters of FUNGI features")
ax.set_xlabel("PC 1")
ax.set_ylabel("PC 2")
fig.tight_layout()
plt.show()
