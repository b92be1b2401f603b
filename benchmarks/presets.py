"""Cost of each view preset against the plain embedding forward, side by side (CPU).

For each backbone (ImageNet MobileNetV2 at 224 px and a timm ViT-S/16 at 224
px with random weights: the cost does not depend on the weights) and each
``views`` preset, ``FungiTransformer(...).transform(images)`` is timed for the
embedding + KL and for each of DINO, SimCLR and KL+DINO+SimCLR, and divided
by the time of the plain embedding forward (the adapter's ``encode`` of the
inference views under ``torch.no_grad``) of the same images. Every
configuration is fitted once beforehand (SimCLR's negative bank has
``--negatives`` images, which changes ``fit`` only); the repeats are
interleaved over all configurations, and the fastest repeat of each is kept,
so a slow spell on a shared machine hits every configuration alike.

Usage::

    .venv/bin/python benchmarks/presets.py --threads 1              # about 10 min on a busy 2-core CPU
    .venv/bin/python benchmarks/presets.py --threads 1 --quick      # MobileNetV2 only, 2 images, 1 repeat
    .venv/bin/python benchmarks/presets.py --json /tmp/presets.json
    .venv/bin/python benchmarks/presets.py --projection-costs --images 32   # dense vs Kronecker only
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from skfungi import FungiTransformer
from skfungi.losses import VIEW_PRESETS, make_loss

LOSS_SETS = {
    "emb+kl": ("kl",),
    "dino": ("dino",),
    "simclr": ("simclr",),
    "emb+kl+dino+simclr": ("kl", "dino", "simclr"),
}


def make_backbone(name: str, input_size: int):
    if name == "mobilenet_v2":
        from skfungi.backbones.mobilenet import mobilenet_v2_backbone

        return mobilenet_v2_backbone(input_size=input_size)
    from skfungi import TimmBackbone

    return TimmBackbone(name)


def make_transformer(backbone, preset, losses, negatives: int, batch_size: int, projection: str):
    objects = [make_loss(name, preset) for name in losses]
    for loss in objects:
        if loss.name == "simclr":
            loss.set_params(n_negatives=negatives)
    return FungiTransformer(
        backbone,
        losses=tuple(objects),
        views=preset,
        include_embedding=losses[0] == "kl",
        batch_size=batch_size,
        projection=projection,
        device="cpu",
        random_state=0,
    )


def embedding_seconds(backbone, images: np.ndarray, batch_size: int) -> float:
    samples = backbone.as_samples(images)
    views = [backbone.inference_view(backbone.canonical(samples[i], i)) for i in range(len(images))]
    start = time.perf_counter()
    with torch.no_grad():
        for first in range(0, len(views), batch_size):
            backbone.encode(views[first : first + batch_size])
    return time.perf_counter() - start


def measure(backbone_name: str, presets, images, args) -> dict:
    backbone = make_backbone(backbone_name, args.input_size)
    fitted = {}
    for preset in presets:
        for label in args.loss_sets.split(","):
            losses = LOSS_SETS[label]
            fungi = make_transformer(backbone, preset, losses, args.negatives, args.batch_size, args.projection)
            fitted[preset, label] = fungi.fit(images)
    times = {key: [] for key in fitted}
    baseline = []
    for repeat in range(args.repeats):
        baseline.append(embedding_seconds(backbone, images, args.batch_size))
        for key, fungi in fitted.items():
            start = time.perf_counter()
            fungi.transform(images)
            times[key].append(time.perf_counter() - start)
            print(f"  repeat {repeat}: {backbone_name} {key[0]:6s} {key[1]:20s} {times[key][-1]:8.2f} s", flush=True)
    base = min(baseline)
    rows = []
    for (preset, label), seconds in times.items():
        best = min(seconds)
        paper = min(times["paper", label])
        rows.append(
            {
                "backbone": backbone_name,
                "preset": preset,
                "losses": label,
                "seconds_per_image": best / len(images),
                "ratio_to_embedding": best / base,
                "paper_over_preset": paper / best,
            }
        )
    return {"embedding_seconds_per_image": base / len(images), "rows": rows}


# (name, gradient shape, embedding width, gradient tokens per view: 224 px images, a 32-token text)
PROJECTION_LAYERS = (
    ("MobileNetV2 features.18.0", (1280, 320), 1280, 49),
    ("ViT-S/16 blocks.11.attn.proj", (384, 385), 384, 1),
    ("ViT-B/16 blocks.11.attn.proj", (768, 769), 768, 1),
    ("MiniLM encoder.layer.5.attention.output.dense", (384, 385), 384, 32),
    ("Resemblyzer linear", (256, 257), 256, 1),
)


def projection_costs(samples: int, views: int, repeats: int = 3) -> list[dict]:
    """Seconds per sample of ``reduce`` + ``project`` for the dense and the Kronecker projection.

    Random factors ``g (S, M, d_out)`` and ``a (S, M, d_in)`` with ``M = views x tokens`` (a
    CNN's spatial positions are tokens; a CLS-pooled ViT keeps one token per view), float64 as
    the engine gives them. Memory is the size of what each holds per call: the dense projection
    the ``(S, d_out x d_in)`` gradients plus one regenerated tile, the Kronecker one its two factors
    and the ``(S, k)`` result.
    """
    from skfungi import KroneckerProjection, RademacherProjection
    from skfungi._core.projection import TILE_BYTES

    rows = []
    generator = torch.Generator().manual_seed(0)
    for name, shape, width, tokens in PROJECTION_LAYERS:
        tokens_per_sample = views * tokens
        g = torch.randn(samples, tokens_per_sample, shape[0], generator=generator, dtype=torch.float64)
        a = torch.randn(samples, tokens_per_sample, shape[1], generator=generator, dtype=torch.float64)
        for projection in (RademacherProjection(), KroneckerProjection()):
            projection.fit(shape, width, 0)
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                out = projection.project(projection.reduce(g, a))
                best = min(best, time.perf_counter() - start)
            assert out.shape == (samples, width)
            if isinstance(projection, KroneckerProjection):
                held = (projection.out_factor_.numel() + projection.in_factor_.numel()) * 4 + out.numel() * 8
            else:
                held = samples * shape[0] * shape[1] * 8 + min(TILE_BYTES, width * shape[0] * shape[1] * 4)
            rows.append(
                {
                    "layer": name,
                    "projection": type(projection).__name__,
                    "views": views,
                    "tokens_per_sample": tokens_per_sample,
                    "seconds_per_sample": best / samples,
                    "held_mb": held / 2**20,
                }
            )
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--images", type=int, default=4, help="images transformed per repeat (default 4)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--negatives", type=int, default=4, help="SimCLR negative-bank images (fit only)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--input-size", type=int, default=224, help="MobileNetV2 input side (timm: the model's)")
    parser.add_argument("--projection", default="rademacher", help="rademacher (default) or kronecker")
    parser.add_argument("--backbones", default="mobilenet_v2,vit_small_patch16_224")
    parser.add_argument("--presets", default=",".join(VIEW_PRESETS))
    parser.add_argument("--loss-sets", default=",".join(LOSS_SETS), help=f"among {', '.join(LOSS_SETS)}")
    parser.add_argument("--quick", action="store_true", help="MobileNetV2 only, 2 images, 1 repeat")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument(
        "--projection-costs", action="store_true", help="only time reduce + project, dense vs Kronecker, per layer"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.backbones, args.images, args.repeats = "mobilenet_v2", 2, 1
    torch.set_num_threads(args.threads)
    if args.projection_costs:
        rows = [row for views in (1, 12) for row in projection_costs(args.images, views)]
        print(f"{'layer':30s} {'projection':22s} {'tokens':>6s} {'ms/sample':>10s} {'held MB':>9s}")
        for row in rows:
            print(
                f"{row['layer']:30s} {row['projection']:22s} {row['tokens_per_sample']:6d} "
                f"{1000 * row['seconds_per_sample']:10.2f} {row['held_mb']:9.1f}"
            )
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(rows, handle, indent=2)
        return {"projection_costs": rows}
    images = np.random.default_rng(0).integers(0, 256, size=(args.images, 256, 256, 3), dtype=np.uint8)
    presets = args.presets.split(",")
    results = {
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s)",
        "images": args.images,
        "repeats": args.repeats,
        "projection": args.projection,
        "mobilenet_input_size": args.input_size,
        "backbones": {},
    }
    for name in args.backbones.split(","):
        results["backbones"][name] = measure(name, presets, images, args)
    print(
        f"\n{results['machine']}; {args.images} images of 256 x 256, fastest of {args.repeats} repeats, "
        f"{args.projection} projection"
    )
    print(f"{'backbone':24s} {'preset':6s} {'losses':20s} {'s/image':>9s} {'x embedding':>12s} {'paper / preset':>15s}")
    for name, result in results["backbones"].items():
        print(f"{name:24s} {'-':6s} {'embedding forward':20s} {result['embedding_seconds_per_image']:9.4f} {1:12.1f}")
        for row in result["rows"]:
            print(
                f"{name:24s} {row['preset']:6s} {row['losses']:20s} {row['seconds_per_image']:9.4f} "
                f"{row['ratio_to_embedding']:12.1f} {row['paper_over_preset']:15.2f}"
            )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
