"""
# Linear probe and logistic regression

Any linear model fits FUNGI features. This example trains scikit-learn's
`LogisticRegression` on them, then the paper's linear probe
(`make_linear_probe`: PCA, multinomial logistic regression without intercept,
the L2 strength chosen on a validation split, then refit on all the data).
"""

import matplotlib.pyplot as plt
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import ConfusionMatrixDisplay
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from timm.models.vision_transformer import VisionTransformer

from skfungi import FungiTransformer
from skfungi.datasets import load_digits_images
from skfungi.protocols import make_linear_probe

torch.manual_seed(0)  # the ViT's random weights
vit = VisionTransformer(img_size=16, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=0)
X_train, y_train, X_test, y_test = load_digits_images(n_train=60, n_test=30)

# %%
# ## Extract once, fit several models
#
# `fit` draws the random heads and the projection and builds SimCLR's
# negative bank from the training images; `transform` is then a pure
# function of each image.

fungi = FungiTransformer(vit, losses=("kl", "simclr"), random_state=0)
train_features = fungi.fit_transform(X_train)
test_features = fungi.transform(X_test)
print(train_features.shape, test_features.shape)

# %%
# ## LogisticRegression

logistic = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
logistic.fit(train_features, y_train)
print(f"LogisticRegression test accuracy: {logistic.score(test_features, y_test):.3f}")

# %%
# ## The paper's linear probe
#
# A `GridSearchCV` over the L2 penalty `lambda` (the paper's
# `linspace(5e-6, 5e-4, 5)`), on a stratified 20% validation split.

probe = make_linear_probe(random_state=0)
probe.fit(train_features, y_train)
print("chosen lambda:", probe.best_params_["probe__l2_penalty"])
print(f"linear probe test accuracy: {probe.score(test_features, y_test):.3f}")

# %%
# Which digits the probe confuses (random weights: a weak probe; a pretrained
# backbone puts nearly everything on the diagonal).

fig, ax = plt.subplots(figsize=(4.5, 4))
ConfusionMatrixDisplay.from_estimator(probe, test_features, y_test, ax=ax, colorbar=False)
ax.set_title("linear probe on FUNGI features")
fig.tight_layout()
plt.show()
