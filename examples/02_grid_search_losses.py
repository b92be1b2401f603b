"""
# Grid search over the loss set

Which gradient blocks help is an empirical question per data set and backbone,
so the loss set is a parameter like any other: `GridSearchCV` can search
`fungitransformer__losses` directly. Since every block is computed on its
own (its own heads, its own seeds), the faster way extracts all blocks once
and lets `FungiBlockSelector` pick subsets of columns per candidate. This
example runs both and shows they agree.
"""

import matplotlib.pyplot as plt
import torch
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from timm.models.vision_transformer import VisionTransformer

from skfungi import FungiBlockSelector, FungiTransformer
from skfungi.datasets import load_digits_images
from skfungi.protocols import CappedPCA

torch.manual_seed(0)  # the ViT's random weights
vit = VisionTransformer(img_size=16, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=0)
X, y, _, _ = load_digits_images(n_train=36, n_test=10)
folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)

# %%
# ## Searching `fungitransformer__losses`
#
# Each candidate and each fold fits the whole pipeline, so the features are
# extracted again every time.

pipe = make_pipeline(FungiTransformer(vit, random_state=0), CappedPCA(512), KNeighborsClassifier(n_neighbors=5))
direct = GridSearchCV(pipe, {"fungitransformer__losses": [("kl",), ("kl", "dino")]}, cv=folds)
direct.fit(X, y)
for losses, score in zip(
    direct.cv_results_["param_fungitransformer__losses"], direct.cv_results_["mean_test_score"], strict=True
):
    print(f"losses={losses}: {score:.3f}")

# %%
# ## Extract once, select blocks
#
# The features with every loss, as a DataFrame whose column names
# (`embedding0..`, `kl0..`, `dino0..`, `simclr0..`) tell `FungiBlockSelector`
# where each block lies. A block does not depend on which other losses were
# extracted with it, so the first two candidates below are the two above.
# (SimCLR's negative bank is drawn from the data `fit` sees, so a SimCLR block
# extracted once on all samples is not exactly the one refitted per fold.)

fungi = FungiTransformer(vit, losses=("kl", "dino", "simclr"), random_state=0).set_output(transform="pandas")
features = fungi.fit_transform(X)
candidates = [
    ("embedding", "kl"),
    ("embedding", "kl", "dino"),
    ("embedding", "kl", "simclr"),
    ("embedding", "kl", "dino", "simclr"),
]
selected = GridSearchCV(
    make_pipeline(FungiBlockSelector(), CappedPCA(512), KNeighborsClassifier(n_neighbors=5)),
    {"fungiblockselector__blocks": candidates},
    cv=folds,
)
selected.fit(features, y)
scores = selected.cv_results_["mean_test_score"]
for blocks, score in zip(candidates, scores, strict=True):
    print(f"blocks={blocks}: {score:.3f}")
print("same scores for the shared candidates:", list(scores[:2]) == list(direct.cv_results_["mean_test_score"]))
print("best:", selected.best_params_)

# %%
# The cross-validated score of each block set (random weights: the bars show
# the mechanics, not the paper's gains).

fig, ax = plt.subplots(figsize=(6, 2.5))
ax.barh([" + ".join(blocks) for blocks in candidates], scores)
ax.set_xlabel("mean 3-fold kNN accuracy")
fig.tight_layout()
plt.show()
