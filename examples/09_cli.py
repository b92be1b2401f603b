"""
# The command line: `skfungi extract`

`skfungi extract INPUT -o OUTPUT --backbone SPEC` writes the FUNGI features
of a folder of images (class sub-folders become a label column), a CSV or
Parquet table of texts, or a `.npy` array, without writing Python. This
example saves a few digits as PNG files in class folders, extracts a training
and a test set with timm's tiny `test_vit` (random weights, nothing is
downloaded), and reads the Parquet files back for a classifier. See the
[command line guide](../../cli.md) for every option.

The commands run here, in a temporary folder, through `skfungi.cli.main`, the function behind the
`skfungi` console script; in a shell, type the printed lines.
"""

import shlex
import shutil
import tempfile
from pathlib import Path

import pandas as pd
from PIL import Image
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
# `--fit-input` names the data the transformer is fitted on (random heads,
# projection, SimCLR's negative bank): give both commands the training
# folder and the same `--seed`, so that both sets get the same features.

common = ("--backbone", "timm:test_vit", "--losses", "kl", "--seed", "0", "--quiet")
skfungi("extract", str(workdir / "train"), "-o", str(workdir / "train.parquet"), *common)
skfungi(
    "extract",
    str(workdir / "test"),
    "-o",
    str(workdir / "test.parquet"),
    "--fit-input",
    str(workdir / "train"),
    *common,
)

# %%
# ## Read the features back
#
# One row per image: its path, its label (the class folder), then the
# feature columns `embedding0..`, `kl0..`.

train = pd.read_parquet(workdir / "train.parquet")
test = pd.read_parquet(workdir / "test.parquet")
print(train.iloc[:3, :5])
features = [name for name in train.columns if name not in ("sample", "label")]
print(len(features), "feature columns")
knn = KNeighborsClassifier(n_neighbors=3).fit(train[features], train["label"])
print(f"test accuracy (random weights): {knn.score(test[features], test['label']):.2f}")
shutil.rmtree(workdir)  # the temporary folder
