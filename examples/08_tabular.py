"""
# Tabular rows with an MLP

Rows of numeric features, or a DataFrame, go through a frozen, randomly
initialised MLP; FUNGI adds the gradients of KL and SimCLR at its last
linear layer. This is an extension beyond the paper, which covers images,
text and audio only: read the [tabular guide](../../tabular.md) before
relying on it.
"""

import matplotlib.pyplot as plt
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skfungi import FungiTransformer, TabularMLP

X, y = load_wine(return_X_y=True, as_frame=True)  # 178 rows, 13 numeric columns
print(X.shape)

# %%
# ## FUNGI features in a cross-validated pipeline
#
# `TabularMLP` builds a seeded MLP for the data's number of columns in `fit`
# and standardises rows with the training statistics.

fungi = FungiTransformer(TabularMLP(hidden=(32,), embedding_dim=16), losses=("kl", "simclr"), random_state=0)
pipe = make_pipeline(fungi, LogisticRegression(max_iter=2000))
scores = {"FUNGI features": cross_val_score(pipe, X, y, cv=3)}
print("FUNGI features:   ", scores["FUNGI features"].round(3))

# %%
# The same classifier on the MLP's embedding alone, and on the standardised
# columns themselves, for comparison.

embedding_only = FungiTransformer(TabularMLP(hidden=(32,), embedding_dim=16), losses=(), random_state=0)
embedding = make_pipeline(embedding_only, LogisticRegression(max_iter=2000))
scores["embedding only"] = cross_val_score(embedding, X, y, cv=3)
plain = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
scores["standardised rows"] = cross_val_score(plain, X, y, cv=3)
print("embedding only:   ", scores["embedding only"].round(3))
print("standardised rows:", scores["standardised rows"].round(3))

fig, ax = plt.subplots(figsize=(5.5, 2.4))
names = list(scores)
ax.barh(names, [scores[name].mean() for name in names], xerr=[scores[name].std() for name in names], color="teal")
ax.set_xlim(0.5, 1.0)
ax.invert_yaxis()
ax.set_xlabel("3-fold accuracy, logistic regression (wine)")
fig.tight_layout()
plt.show()

# %%
# ## DataFrame output
#
# `set_output(transform="pandas")` names the columns by block.

features = fungi.set_output(transform="pandas").fit(X).transform(X.iloc[:3])
print(features.iloc[:, [0, 16, 32]])
