"""
# Approximate neighbours with HNSW

`HNSWTransformer` builds an hnswlib graph and returns the sparse neighbour
graph that scikit-learn's `KNeighborsTransformer` returns, so
`KNeighborsClassifier(metric="precomputed")` (or any estimator taking a
precomputed graph) uses it. For many thousands of training rows, it replaces
the brute-force search.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from timm.models.vision_transformer import VisionTransformer

from skfungi import FungiTransformer, HNSWTransformer
from skfungi.datasets import load_digits_images
from skfungi.protocols import CappedPCA

torch.manual_seed(0)  # the ViT's random weights
vit = VisionTransformer(img_size=16, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=0)
X_train, y_train, X_test, y_test = load_digits_images(n_train=300, n_test=100)

# %%
# ## Features once, two neighbour searches
#
# The KL block costs one forward per image (shared with the embedding).

fungi = FungiTransformer(vit, losses=("kl",), random_state=0)
train, test = fungi.fit_transform(X_train), fungi.transform(X_test)

approximate = make_pipeline(
    CappedPCA(32),
    HNSWTransformer(n_neighbors=10, metric="cosine", random_state=0),
    KNeighborsClassifier(n_neighbors=10, metric="precomputed"),
)
exact = make_pipeline(CappedPCA(32), KNeighborsClassifier(n_neighbors=10, metric="cosine"))
approximate.fit(train, y_train)
exact.fit(train, y_train)
print(f"HNSW kNN accuracy:  {approximate.score(test, y_test):.3f}")
print(f"exact kNN accuracy: {exact.score(test, y_test):.3f}")
print("same predictions:", np.mean(approximate.predict(test) == exact.predict(test)))

# %%
# ## The graph itself
#
# A CSR matrix of distances, `n_neighbors + 1` per training row (a row finds
# itself first, at distance 0), as `KNeighborsTransformer` gives.

hnsw = approximate.named_steps["hnswtransformer"]
graph = hnsw.transform(approximate.named_steps["cappedpca"].transform(train[:3]))
print(type(graph).__name__, graph.shape, graph.getnnz(axis=1))
distances, indices = hnsw.kneighbors(n_neighbors=3)  # training rows, each left out of its own list
print(indices[:3])

# %%
# The five training images HNSW finds nearest to four test images, with their
# labels (random weights: neighbours by texture more than by digit).

queries = approximate.named_steps["cappedpca"].transform(test[:4])
_, neighbours = hnsw.kneighbors(queries, n_neighbors=5)
fig, axes = plt.subplots(4, 6, figsize=(6, 4.2))
for row, (query, found) in enumerate(zip(X_test[:4], neighbours, strict=True)):
    axes[row, 0].imshow(query, cmap="gray_r")
    axes[row, 0].set_title(f"query ({y_test[row]})", fontsize=8)
    for column, index in enumerate(found, start=1):
        axes[row, column].imshow(X_train[index], cmap="gray_r")
        axes[row, column].set_title(str(y_train[index]), fontsize=8)
for ax in axes.flat:
    ax.set_axis_off()
fig.tight_layout()
plt.show()
