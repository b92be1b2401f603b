"""Do FUNGI features of a tabular MLP help beside the raw features? Cross-validated accuracy on bundled data.

For scikit-learn's wine (178 x 13), breast_cancer (569 x 30) and digits
(1797 x 64, the 8 x 8 images as 64 features), with 5 stratified folds
(shuffled, seed 0), each fold:

* ``raw``: the features standardised (``StandardScaler`` fitted on the
  training rows);
* FUNGI of an MLP ``n_features -> 64 -> 64 -> 32`` (``make_mlp_encoder``),
  losses KL + SimCLR (``losses="auto"`` for tabular rows), fitted on the
  training rows only (its SimCLR negatives and feature scale come from them),
  for two MLPs:

  - ``random``: ``TabularMLP()``, random initialisation (seed 0);
  - ``pretrained``: the same MLP first trained for ``--pretrain-steps`` Adam
    steps on the fold's training rows (no labels) with a contrastive loss on
    corrupted rows: each view replaces a random 60 % of a row's features by
    the same features of other random training rows (the empirical marginals),
    a 32-wide projection head, InfoNCE at temperature 0.1 between the two
    views of each row against the rest of the batch (the head is dropped).

  and three ways to use them: ``fungi`` alone, ``raw + fungi`` (the
  L2-normalised blocks appended as they come out of ``FungiTransformer``,
  which is what a ``ColumnTransformer`` gives), and ``raw + fungi (scaled)``
  (the FUNGI columns standardised too, so each weighs like a raw feature).

Two classifiers on each set: ``KNeighborsClassifier(20)`` and
``LogisticRegression(max_iter=5000)`` (C=1). Reported: mean +- standard
deviation of the 5 fold accuracies. The FUNGI features of a fold are
extracted once and shared by both classifiers.

Usage::

    .venv/bin/python benchmarks/tabular.py                      # all three data sets
    .venv/bin/python benchmarks/tabular.py --datasets wine --quick
    .venv/bin/python benchmarks/tabular.py --json /tmp/tabular.json
"""

from __future__ import annotations

import argparse
import json
import platform

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from timing import stopwatch, timed

from skfungi import FungiTransformer
from skfungi.backbones.tabular import TabularBackbone, TabularMLP, make_mlp_encoder

LOADERS = {"wine": load_wine, "breast_cancer": load_breast_cancer, "digits": load_digits}
HIDDEN, EMBEDDING_DIM = (64, 64), 32
CLASSIFIERS = {
    "kNN (k=20)": lambda: KNeighborsClassifier(20),
    "logistic regression": lambda: LogisticRegression(max_iter=5000),
}


def pretrained_mlp(rows: np.ndarray, steps: int, seed: int) -> torch.nn.Module:
    """The MLP after contrastive training on corrupted copies of standardised ``rows`` (no labels)."""
    generator = torch.Generator().manual_seed(seed)
    data = torch.tensor(StandardScaler().fit_transform(rows), dtype=torch.float32)
    module = make_mlp_encoder(data.shape[1], HIDDEN, EMBEDDING_DIM, random_state=seed)
    head = make_mlp_encoder(EMBEDDING_DIM, (EMBEDDING_DIM,), EMBEDDING_DIM, random_state=seed + 1)
    optimizer = torch.optim.Adam([*module.parameters(), *head.parameters()], lr=1e-3)
    batch_size = min(128, data.shape[0])
    for _ in range(steps):
        batch = data[torch.randperm(data.shape[0], generator=generator)[:batch_size]]
        latents = [F.normalize(head(module(corrupted(batch, data, generator))), dim=1) for _ in range(2)]
        logits = latents[0] @ latents[1].T / 0.1
        targets = torch.arange(batch_size)
        loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return module.double().eval()


def corrupted(batch: torch.Tensor, data: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``batch`` with 60 % of each row's features replaced by those of random rows of ``data``."""
    replace = torch.rand(batch.shape, generator=generator) < 0.6
    donors = data[torch.randint(data.shape[0], (batch.shape[0],), generator=generator)]
    return torch.where(replace, donors, batch)


def fold_feature_sets(X_train, X_test, steps: int, seed: int) -> tuple[dict, dict]:
    """Feature sets of one fold: name -> (train, test); and the extraction seconds per MLP."""
    scaler = StandardScaler().fit(X_train)
    raw = (scaler.transform(X_train), scaler.transform(X_test))
    sets = {"raw": raw}
    seconds = {}
    backbones = {"random": lambda: TabularMLP(HIDDEN, EMBEDDING_DIM, random_state=seed)}
    if steps > 0:
        backbones["pretrained"] = lambda: TabularBackbone(pretrained_mlp(X_train, steps, seed), standardize=True)
    for name, make_backbone in backbones.items():
        with stopwatch() as elapsed:
            fungi = FungiTransformer(make_backbone(), random_state=seed).fit(X_train)
            features = (fungi.transform(X_train), fungi.transform(X_test))
        seconds[name] = elapsed.wall
        scaled = StandardScaler().fit(features[0])
        sets[f"{name}: fungi"] = features
        sets[f"{name}: raw + fungi"] = tuple(np.hstack([r, f]) for r, f in zip(raw, features, strict=True))
        sets[f"{name}: raw + fungi (scaled)"] = tuple(
            np.hstack([r, scaled.transform(f)]) for r, f in zip(raw, features, strict=True)
        )
    return sets, seconds


def evaluate(dataset: str, folds: int, steps: int, seed: int) -> dict:
    X, y = LOADERS[dataset](return_X_y=True)
    X = X.astype(np.float64)
    scores: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, float] = {}
    splitter = StratifiedKFold(folds, shuffle=True, random_state=0)
    for train, test in splitter.split(X, y):
        sets, fold_seconds = fold_feature_sets(X[train], X[test], steps, seed)
        for name, value in fold_seconds.items():
            seconds[name] = seconds.get(name, 0.0) + value
        for set_name, (train_features, test_features) in sets.items():
            for classifier_name, make in CLASSIFIERS.items():
                accuracy = make().fit(train_features, y[train]).score(test_features, y[test])
                scores.setdefault(set_name, {}).setdefault(classifier_name, []).append(float(accuracy))
    return {"shape": list(X.shape), "scores": scores, "extraction_seconds": seconds}


def print_table(results: dict) -> None:
    print("| data set | features | " + " | ".join(CLASSIFIERS) + " |")
    print("|---|---|" + "---|" * len(CLASSIFIERS))
    for dataset, result in results.items():
        label = f"{dataset} ({result['shape'][0]} x {result['shape'][1]})"
        raw = {name: np.mean(values) for name, values in result["scores"]["raw"].items()}
        for set_name, by_classifier in result["scores"].items():
            cells = []
            for classifier_name, values in by_classifier.items():
                mean, std = np.mean(values), np.std(values)
                delta = "" if set_name == "raw" else f" ({mean - raw[classifier_name]:+.3f})"
                cells.append(f"{mean:.3f} +- {std:.3f}{delta}")
            print(f"| {label} | {set_name} | " + " | ".join(cells) + " |")
            label = ""
    for dataset, result in results.items():
        timing = ", ".join(f"{name} {value:.1f} s" for name, value in result["extraction_seconds"].items())
        print(f"{dataset}: FUNGI fit + transforms over all folds: {timing}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default=",".join(LOADERS), help="comma-separated: " + ", ".join(LOADERS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--pretrain-steps", type=int, default=300, help="0 skips the pretrained MLP")
    parser.add_argument("--seed", type=int, default=0, help="seed of the MLPs, FUNGI and pretraining")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--quick", action="store_true", help="3 folds, 50 pretraining steps")
    parser.add_argument("--json", help="write the fold scores to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folds, steps = (3, min(args.pretrain_steps, 50)) if args.quick else (args.folds, args.pretrain_steps)
    results = {}
    for dataset in args.datasets.split(","):
        seconds, results[dataset] = timed(evaluate, dataset, folds, steps, args.seed)
        print(f"{dataset}: {seconds:.0f} s", flush=True)
    print(f"\n{folds} stratified folds (shuffled, seed 0); mean +- std of fold accuracies; (difference to raw)\n")
    print_table(results)
    if args.json:
        setup = {"folds": folds, "pretrain_steps": steps, "seed": args.seed, "threads": args.threads}
        setup |= {"machine": platform.processor() or platform.machine(), "torch": torch.__version__}
        with open(args.json, "w") as file:
            json.dump({"setup": setup, "results": results}, file, indent=1)


if __name__ == "__main__":
    main()
