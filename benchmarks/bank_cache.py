"""``fit`` time per negative-bank image: a first fit (bank encoded, then stored) against a fit that
reads the stored bank, side by side in one process.

``FungiTransformer(backbone, losses=("simclr",))`` is fitted on random
256 x 256 images with a bank of ``--negatives`` of them (the paper's 49
patches each for images). Each repeat gives both fits ``memory=`` a new
empty folder: the first fit encodes the bank and stores it (with its first
image encoded alone, for the check), a new transformer's fit reads it (after
encoding the first bank image alone again and finding it equal, bit for
bit); the fastest repeat of each is kept. Both fits also draw the heads and
the projection, which the per-image figures include.

Usage::

    .venv/bin/python benchmarks/bank_cache.py --threads 1                  # ImageNet MobileNetV2, 224 px, 8 images
    .venv/bin/python benchmarks/bank_cache.py --backbone vit_small_patch16_224 --negatives 4   # timm, random weights
    .venv/bin/python benchmarks/bank_cache.py --quick                      # 2 images, 96 px
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch
from presets import make_backbone
from timing import timed

from skfungi import FungiTransformer
from skfungi.losses import SimCLRLoss


def fit_seconds(backbone, images: np.ndarray, negatives: int, batch_size: int, device: str, memory: str) -> float:
    fungi = FungiTransformer(
        backbone,
        losses=(SimCLRLoss(n_negatives=negatives),),
        include_embedding=False,
        batch_size=batch_size,
        device=device,
        random_state=0,
        memory=memory,
    )
    return timed(fungi.fit, images)[0]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="mobilenet_v2", help="mobilenet_v2 (ImageNet weights) or a timm name")
    parser.add_argument("--input-size", type=int, default=224, help="MobileNetV2 input side (default 224)")
    parser.add_argument("--model-args", default="", help="timm create_model overrides, e.g. depth=1,embed_dim=32")
    parser.add_argument("--negatives", type=int, default=8, help="bank images (default 8)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="2 bank images, 96 px MobileNetV2, 1 repeat")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.negatives, args.repeats, args.input_size = 2, 1, 96
    torch.set_num_threads(args.threads)
    backbone = make_backbone(args.backbone, args.input_size, args.model_args)
    images = np.random.default_rng(0).integers(0, 256, size=(args.negatives, 256, 256, 3), dtype=np.uint8)
    first, cached = [], []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as folder:
            settings = (backbone, images, args.negatives, args.batch_size, args.device, folder)
            first.append(fit_seconds(*settings))
            cached.append(fit_seconds(*settings))
            assert len(list(Path(folder, "negative-banks").glob("*.bank"))) == 1
        print(f"  repeat {repeat}: first fit {first[-1]:.2f} s, cached fit {cached[-1]:.2f} s", flush=True)
    results = {
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} thread(s), {args.device}",
        "backbone": args.backbone,
        "input_size": args.input_size,
        "bank_images": args.negatives,
        "repeats": args.repeats,
        "first_fit_seconds_per_bank_image": min(first) / args.negatives,
        "cached_fit_seconds_per_bank_image": min(cached) / args.negatives,
    }
    results["speedup"] = results["first_fit_seconds_per_bank_image"] / results["cached_fit_seconds_per_bank_image"]
    print(
        f"\n{results['machine']}; {args.backbone}, SimCLR bank of {args.negatives} images, fastest of {args.repeats}\n"
        "| fit | s / bank image |\n|---|---|\n"
        f"| first (bank encoded and stored) | {results['first_fit_seconds_per_bank_image']:.3f} |\n"
        f"| cached (bank read, first image encoded again and checked) | "
        f"{results['cached_fit_seconds_per_bank_image']:.3f} |\n"
        f"| first / cached | **{results['speedup']:.1f}x** |"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
