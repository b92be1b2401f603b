"""Where the gradients help: each setting of the gradient blocks against its no-gradient control.

One question, asked on the project's own pairs: **what makes a gradient block
beat the mean embedding of the same views (no gradient)?** Every run goes
through :func:`skfungi.evaluation.evaluate` (the paper's kNN: PCA to 512,
k = 20; 5 random stratified splits; every gradient set compared split by split
with its matched control), from today's defaults (``FungiTransformer``'s:
the paper's losses and views, the SRHT projection, the adapter's target
layer) with one thing changed at a time:

* the target layer (MobileNetV2: ``features.18.0``, the last inverted
  residual block's projection ``features.17.conv.2``, an earlier stage's
  ``features.14.conv.2``; MiniLM: the attention output and the FFN output of
  the last layer, the same in layer 3);
* SimCLR: the patch grid (4 x 4 against 7 x 7), the temperature, the latent
  width, the number of negatives (text: the number of views);
* KL: the temperature; DINO: the head's width and the teacher's temperature;
* downstream: the projection's width, and a whitening PCA (to 32
  components) before the kNN (scored on the default run's blocks, the same splits).

The 32-px pairs, the text and the audio pair vary every setting; Fashion-MNIST at 64 px, whose
views have 4 times the pixels of the 32-px ones, varies the layer and the SimCLR grid only, and
at 224 px (49 times the pixels, 200 images) the SimCLR grid only.

Blocks a setting does not change (the embedding, the other losses, the
controls) are extracted once per pair and reused from the pair's block store.
Each run writes its report (``<output>/<pair>/<setting>.json``, the schema of
``skfungi evaluate``); ``--report`` turns them into the tables and pictures of
docs/where_gradients_help.md::

    .venv/bin/python benchmarks/gradient_study.py --output /tmp/study --threads 1
    .venv/bin/python benchmarks/gradient_study.py --output /tmp/study --pairs text,audio --threads 1
    .venv/bin/python benchmarks/gradient_study.py --output /tmp/study --report docs/figures
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: the benchmarks package

from benchmarks.evidence.data import audio_pair, text_pair, vision_pair
from skfungi.evaluation import evaluate
from skfungi.losses import DINOLoss, KLLoss, SimCLRLoss
from skfungi.protocols import CappedPCA, evaluate_knn

SPLITS = 5
WHITENED_COMPONENTS = 32  # fmnist32: 73.3% for emb + all at 32, 71.5 at 64, 52.4 at 128, 24.9 at 256


@dataclass
class Setting:
    """One change from the defaults: losses replaced by name, a target layer, a projection width."""

    name: str
    changes: str  # the block it changes: "kl", "dino", "simclr", "all" (the layer, the projection)
    losses: dict = field(default_factory=dict)
    layer: str | None = None
    projection_dim: int | str = "auto"


SIMCLR_GRID = Setting("SimCLR 4 x 4 patches", "simclr", {"simclr": SimCLRLoss(grid_size=4)})


def image_settings(embedding_width: int, full: bool = True) -> list[Setting]:
    settings = [
        Setting("default", "all"),
        Setting("layer features.17.conv.2", "all", layer="features.17.conv.2"),
        Setting("layer features.14.conv.2", "all", layer="features.14.conv.2"),
        SIMCLR_GRID,
    ]
    if not full:
        return settings
    return [
        *settings,
        Setting("SimCLR temperature 0.2", "simclr", {"simclr": SimCLRLoss(temperature=0.2)}),
        Setting("SimCLR latent 256", "simclr", {"simclr": SimCLRLoss(latent_dim=256)}),
        Setting("SimCLR 64 negatives", "simclr", {"simclr": SimCLRLoss(n_negatives=64)}),
        Setting("KL temperature 1", "kl", {"kl": KLLoss(temperature=1.0)}),
        Setting("KL temperature 5", "kl", {"kl": KLLoss(temperature=5.0)}),
        Setting("DINO head 256", "dino", {"dino": DINOLoss(latent_dim=256)}),
        Setting("DINO teacher temperature 0.04", "dino", {"dino": DINOLoss(teacher_temperature=0.04)}),
        Setting(f"projection {2 * embedding_width}", "all", projection_dim=2 * embedding_width),
        Setting(f"projection {embedding_width // 4}", "all", projection_dim=embedding_width // 4),
    ]


def text_settings() -> list[Setting]:
    last, earlier = "encoder.layer.5", "encoder.layer.3"
    return [
        Setting("default", "all"),
        Setting(f"layer {last}.output.dense (FFN)", "all", layer=f"{last}.output.dense"),
        Setting(f"layer {earlier}.attention.output.dense", "all", layer=f"{earlier}.attention.output.dense"),
        Setting(f"layer {earlier}.output.dense (FFN)", "all", layer=f"{earlier}.output.dense"),
        Setting("SimCLR 4 views", "simclr", {"simclr": SimCLRLoss(n_views=4)}),
        Setting("SimCLR temperature 0.2", "simclr", {"simclr": SimCLRLoss(temperature=0.2)}),
        Setting("SimCLR latent 96", "simclr", {"simclr": SimCLRLoss(latent_dim=96)}),
        Setting("SimCLR 64 negatives", "simclr", {"simclr": SimCLRLoss(n_negatives=64)}),
        Setting("KL temperature 1", "kl", {"kl": KLLoss(temperature=1.0)}),
        Setting("KL temperature 5", "kl", {"kl": KLLoss(temperature=5.0)}),
        Setting("projection 768", "all", projection_dim=768),
        Setting("projection 96", "all", projection_dim=96),
    ]


def audio_settings() -> list[Setting]:
    return [
        Setting("default", "all"),
        Setting("SimCLR 4 views", "simclr", {"simclr": SimCLRLoss(n_views=4)}),
        Setting("SimCLR temperature 0.2", "simclr", {"simclr": SimCLRLoss(temperature=0.2)}),
        Setting("SimCLR latent 256", "simclr", {"simclr": SimCLRLoss(latent_dim=256)}),
        Setting("SimCLR 16 negatives", "simclr", {"simclr": SimCLRLoss(n_negatives=16)}),
        Setting("KL temperature 1", "kl", {"kl": KLLoss(temperature=1.0)}),
        Setting("KL temperature 5", "kl", {"kl": KLLoss(temperature=5.0)}),
        Setting("projection 512", "all", projection_dim=512),
        Setting("projection 64", "all", projection_dim=64),
    ]


def digits_pair():
    """MobileNetV2 x scikit-learn's 8x8 digits at 32 px: 1,256 images, 256 of them to fit on."""
    from benchmarks.evidence.data import Pair
    from skfungi.backbones.mobilenet import MOBILENET_V2_LAYER, mobilenet_v2_backbone
    from skfungi.datasets import load_digits_images

    X, y, X_fit, _ = load_digits_images(n_train=1000, n_test=256, random_state=0)
    title = "MobileNetV2 (ImageNet-1k) x scikit-learn digits, 32 px, layer features.18.0"
    return Pair("digits32", title, mobilenet_v2_backbone(32), MOBILENET_V2_LAYER, {}, X, y, X_fit, 700, 300)


PAIRS = {
    "fmnist32": (lambda: vision_pair(n_train=700, n_test=300, image_size=32), image_settings(1280)),
    "digits32": (digits_pair, image_settings(1280)),
    "fmnist64": (lambda: vision_pair(n_train=700, n_test=300, image_size=64), image_settings(1280, full=False)),
    "fmnist224": (
        lambda: vision_pair(n_train=140, n_test=60, n_fit=64, image_size=224),
        [Setting("default", "all"), SIMCLR_GRID],
    ),
    "text": (lambda: text_pair(n_train=700, n_test=300, n_views=12), text_settings()),
    "audio": (lambda: audio_pair(per_language=80, fit_per_language=13), audio_settings()),
}
IMAGE_PAIRS = ("fmnist32", "digits32", "fmnist64", "fmnist224")


def losses_of(pair, setting: Setting) -> list:
    """The paper's losses for the pair's modality, with the setting's changes."""
    names = ("kl", "dino", "simclr") if pair.name in IMAGE_PAIRS else ("kl", "simclr")
    return [setting.losses.get(name, name) for name in names]


def run_setting(pair, setting: Setting, output: Path, log) -> Path:
    path = output / pair.name / f"{slug(setting.name)}.json"
    whitened = output / pair.name / "whitened.json"
    if path.is_file() and (setting.name != "default" or whitened.is_file()):
        log(f"[{pair.name}] {setting.name}: done already ({path})")
        return path
    start = time.perf_counter()
    report = evaluate(
        pair.backbone,
        pair.pool,
        pair.labels,
        losses=losses_of(pair, setting),
        layer=setting.layer or pair.layer,
        projection_dim=setting.projection_dim,
        splits=SPLITS,
        train_size=pair.n_train,
        test_size=pair.n_test,
        fit_samples=pair.fit_samples,
        random_state=0,
        batch_size=pair.batch_size,
        output_dir=output / pair.name / "store",
        data_name=pair.name,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    report.to_json(path)
    log(f"[{pair.name}] {setting.name}: {time.perf_counter() - start:.0f} s, {report.recommendation}")
    if setting.name == "default":  # its blocks, read back from the store when the report was there already
        whitened.write_text(json.dumps(whitened_scores(report, pair.labels), indent=1) + "\n")
    return path


def whitened_scores(report, labels) -> dict:
    """kNN top-1 per split of the default run's sets after a whitening PCA to ``WHITENED_COMPONENTS``
    (fitted on the training features), for every set the run scored: the same splits, the same blocks.

    Whitening to the paper's 512 components with a few hundred training samples gives the noise
    directions the weight of the signal's: on fmnist32 every set fell to 10-24% (chance: 10%).
    """
    labels = np.asarray(labels)
    scores = {}
    for result in report.results:
        features = np.hstack([report.blocks[name].features for name in result.features])
        per_split = []
        for split in report.splits:
            train, test = features[split.train], features[split.test]
            pca = CappedPCA(WHITENED_COMPONENTS, whiten=True, random_state=0).fit(train)
            knn = evaluate_knn(pca.transform(train), labels[split.train], pca.transform(test), labels[split.test],
                               n_components=None)  # fmt: skip
            per_split.append(knn["top1"])
        scores["+".join(result.features)] = per_split
    return scores


def slug(name: str) -> str:
    return "".join(character if character.isalnum() else "-" for character in name.lower()).strip("-")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True, help="folder of the reports and block stores")
    parser.add_argument("--pairs", default=",".join(PAIRS), help=f"comma-separated among {', '.join(PAIRS)}")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for the run")
    parser.add_argument("--report", type=Path, default=None, help="write the tables and pictures into this folder")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [name.strip() for name in args.pairs.split(",") if name.strip()]
    if args.report is not None:
        from benchmarks.gradient_study_report import write_report

        print(write_report(args.output, names, args.report))
        return 0
    for name in names:
        build, settings = PAIRS[name]
        pair = build()
        pair.name = name
        for setting in settings:
            run_setting(pair, setting, args.output, lambda text: print(text, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
