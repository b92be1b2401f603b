"""
# Tabular rows: an MLP backbone (an extension beyond the paper)

Rows of numeric features, or a DataFrame, go through a frozen, randomly
initialised MLP; FUNGI adds the gradients of KL and SimCLR at its last
linear layer. The paper covers images, text and audio only: read the
[tabular guide](../../tabular.md) before relying on this.
"""

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
print("FUNGI features:   ", cross_val_score(pipe, X, y, cv=3).round(3))

# %%
# The same classifier on the standardised columns themselves, for comparison.

plain = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
print("standardised rows:", cross_val_score(plain, X, y, cv=3).round(3))

# %%
# ## DataFrame output
#
# `set_output(transform="pandas")` names the columns by block.

features = fungi.set_output(transform="pandas").fit(X).transform(X.iloc[:3])
print(features.iloc[:, [0, 16, 32]])
