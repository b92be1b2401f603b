"""Cost of each view preset against the plain embedding forward, side by side.

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
``--device`` and ``--precision`` run both the transformers and the baseline
on that device at that precision (``benchmarks/gpu.py`` uses them).

Usage::

    .venv/bin/python benchmarks/presets.py --threads 1              # about 10 min on a busy 2-core CPU
    .venv/bin/python benchmarks/presets.py --threads 1 --quick      # MobileNetV2 only, 2 images, 1 repeat
    .venv/bin/python benchmarks/presets.py --json /tmp/presets.json
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import platform
from contextlib import nullcontext

import numpy as np
import torch
from timing import fastest, interleaved

from skfungi import FungiTransformer
from skfungi.losses import VIEW_PRESETS, make_loss

LOSS_SETS = {
    "emb+kl": ("kl",),
    "dino": ("dino",),
    "simclr": ("simclr",),
    "emb+kl+dino+simclr": ("kl", "dino", "simclr"),
}


def make_backbone(name: str, input_size: int, model_args: str = ""):
    if name == "mobilenet_v2":
        from skfungi.backbones.mobilenet import mobilenet_v2_backbone

        return mobilenet_v2_backbone(input_size=input_size)
    from timm import create_model

    from skfungi import TimmBackbone

    torch.manual_seed(0)  # random weights: the cost does not depend on them
    return TimmBackbone(create_model(name, pretrained=False, num_classes=0, **model_overrides(model_args)))


def model_overrides(text: str) -> dict:
    """``"depth=1,embed_dim=32"`` -> ``{"depth": 1, "embed_dim": 32}`` (ints, floats or strings)."""
    overrides = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        for kind in (int, float):
            try:
                value = kind(value)
                break
            except ValueError:
                pass
        overrides[key.strip()] = value
    return overrides


def make_transformer(backbone, preset, losses, negatives: int, args):
    objects = [make_loss(name, preset) for name in losses]
    for loss in objects:
        if loss.name == "simclr":
            loss.set_params(n_negatives=negatives)
    return FungiTransformer(
        backbone,
        losses=tuple(objects),
        views=preset,
        include_embedding=losses[0] == "kl",
        batch_size=args.batch_size,
        projection=args.projection,
        device=args.device,
        precision=args.precision,
        random_state=0,
    )


def forward_precision(precision: str, device: torch.device):
    """``torch.autocast`` at ``precision`` on ``device``, as ``FungiTransformer(precision=...)`` runs the
    backbone's forward (none for float32)."""
    if precision == "float32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, precision))


def embed_all(backbone, images: np.ndarray, batch_size: int, precision: str):
    """The plain embedding forward: the adapter's ``embed`` of the inference views, without gradient.

    Returns the call that runs it, the views built beforehand (outside the timing)."""
    samples = backbone.as_samples(images)
    views = [backbone.inference_view(backbone.canonical(samples[i], i)) for i in range(len(images))]

    def embed() -> None:
        with torch.no_grad(), forward_precision(precision, backbone.device):
            for first in range(0, len(views), batch_size):
                backbone.embed(views[first : first + batch_size])

    return embed


def measure(backbone_name: str, presets, images, args) -> dict:
    backbone = make_backbone(backbone_name, args.input_size, args.model_args).to(torch.device(args.device))
    calls = {"embedding": embed_all(backbone, images, args.batch_size, args.precision)}
    for preset in presets:
        for label in args.loss_sets.split(","):
            fungi = make_transformer(backbone, preset, LOSS_SETS[label], args.negatives, args).fit(images)
            calls[preset, label] = functools.partial(fungi.transform, images)

    def report(repeat: int, times: dict) -> None:
        for key, seconds in times.items():
            if key != "embedding":
                print(f"  repeat {repeat}: {backbone_name} {key[0]:6s} {key[1]:20s} {seconds[-1]:8.2f} s", flush=True)

    best = fastest(interleaved(calls, args.repeats, backbone.device, on_repeat=report))
    base = best.pop("embedding")
    rows = []
    for (preset, label), seconds in best.items():
        paper = best["paper", label]
        rows.append(
            {
                "backbone": backbone_name,
                "preset": preset,
                "losses": label,
                "seconds_per_image": seconds / len(images),
                "ratio_to_embedding": seconds / base,
                "paper_over_preset": paper / seconds,
            }
        )
    return {"embedding_seconds_per_image": base / len(images), "rows": rows}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--images", type=int, default=4, help="images transformed per repeat (default 4)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--negatives", type=int, default=4, help="SimCLR negative-bank images (fit only)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--input-size", type=int, default=224, help="MobileNetV2 input side (timm: the model's)")
    parser.add_argument(
        "--projection",
        default=inspect.signature(FungiTransformer).parameters["projection"].default,
        help="default: the library's default projection",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--backbones", default="mobilenet_v2,vit_small_patch16_224")
    parser.add_argument("--model-args", default="", help="timm create_model overrides, e.g. depth=1,embed_dim=32")
    parser.add_argument("--presets", default=",".join(VIEW_PRESETS))
    parser.add_argument("--loss-sets", default=",".join(LOSS_SETS), help=f"among {', '.join(LOSS_SETS)}")
    parser.add_argument("--quick", action="store_true", help="MobileNetV2 only, 2 images, 1 repeat")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.backbones, args.images, args.repeats = "mobilenet_v2", 2, 1
    torch.set_num_threads(args.threads)
    images = np.random.default_rng(0).integers(0, 256, size=(args.images, 256, 256, 3), dtype=np.uint8)
    presets = args.presets.split(",")
    results = {
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} thread(s), {args.device}, {args.precision}",
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
