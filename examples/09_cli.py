"""
# The command line: skfungi extract

`skfungi extract INPUT -o OUTPUT --backbone SPEC` writes the FUNGI features
of a folder of images (class sub-folders become a label column), a CSV or
Parquet table of texts, or a `.npy` array, without writing Python. This
example saves a few digits as PNG files in class folders, extracts a training
set with timm's tiny `test_vit` (random weights, asked for with
`?pretrained=false`: nothing is downloaded), saves the fitted transformer,
extracts a test set with it, and reads the Parquet files back for a
classifier. See the [command line guide](../../cli.md) for every option.

The commands run here, in a temporary folder, through `skfungi.cli.main`, the function behind the
`skfungi` console script; in a shell, type the printed lines.
"""

import shlex
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsClassifier

from skfungi.cli import main
from skfungi.datasets import load_digits_images

X_train, y_train, X_test, y_test = load_digits_images(n_train=20, n_test=10)
workdir = Path(tempfile.mkdtemp(prefix="skfungi-cli-"))
for split, images, labels in (("train", X_train, y_train), ("test", X_test, y_test)):
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = workdir / split / f"digit{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:03d}.png")
print(sorted(str(path.relative_to(workdir)) for path in (workdir / "train").iterdir())[:4], "...")


def skfungi(*arguments):
    """Run one command; print it as typed in `workdir`."""
    print("$ skfungi", shlex.join(argument.replace(f"{workdir}/", "") for argument in arguments))
    status = main(list(arguments))
    if status != 0:
        raise SystemExit(status)


# %%
# ## Extract a training set, then a test set with the same transformer
#
# Fitting draws the random heads and projection from `--seed` and encodes
# SimCLR's negative bank from the training images. `--save-transformer`
# keeps the fitted transformer; `--transformer` gives it to the test set, so
# both sets get the same features and nothing is fitted twice.

skfungi(
    "extract",
    str(workdir / "train"),
    "-o",
    str(workdir / "train.parquet"),
    "--backbone",
    "timm:test_vit?pretrained=false",
    "--losses",
    "kl,simclr",
    "--save-transformer",
    str(workdir / "fungi.pkl"),
    "--quiet",
)
skfungi(
    "extract",
    str(workdir / "test"),
    "-o",
    str(workdir / "test.parquet"),
    "--transformer",
    str(workdir / "fungi.pkl"),
    "-q",
)

# %%
# ## Read the features back
#
# One row per image: its path, its label (the class folder), then one column
# per block of features, each holding a fixed-size vector: `embedding`, `kl`,
# `simclr` (`--layout wide` writes one column per feature instead).

train = pd.read_parquet(workdir / "train.parquet")
test = pd.read_parquet(workdir / "test.parquet")
print(train.columns.tolist())
print(train[["sample", "label"]].head(3))
blocks = ["embedding", "kl", "simclr"]


def features(table):
    """The blocks side by side: one row of floats per image."""
    return np.hstack([np.stack(table[block].to_numpy()) for block in blocks])


print({block: len(train[block].iloc[0]) for block in blocks}, "values per block")
knn = KNeighborsClassifier(n_neighbors=3).fit(features(train), train["label"])
print(f"test accuracy (random weights): {knn.score(features(test), test['label']):.2f}")

# %%
# ## A picture of the training features
#
# The first two principal components of each block, one colour per digit.

fig, axes = plt.subplots(1, len(blocks), figsize=(10, 3.2))
codes = train["label"].astype("category").cat.codes
for axis, block in zip(axes, blocks, strict=True):
    points = PCA(n_components=2).fit_transform(np.stack(train[block].to_numpy()))
    axis.scatter(points[:, 0], points[:, 1], c=codes, cmap="tab10", s=18)
    axis.set_title(f"{block} block")
    axis.set_xticks([])
    axis.set_yticks([])
fig.tight_layout()
plt.show()
shutil.rmtree(workdir)  # the temporary folder
