"""Cost of FungiTransformer's runtime options, side by side in one run.

Each question is answered as a ratio against the default, with the
configurations interleaved (A, B, A, B, ...) so that a noisy shared machine
affects both alike:

* ``num_workers``: JPEG files decoded by background threads while the
  backbone computes, against decoding in the calling thread (``num_workers=0``,
  the only behaviour before the option existed);
* ``precision``: the backbone's forward under ``torch.autocast`` in bfloat16
  or float16, against float32;
* ``batch_size`` on a CPU: DINO's 12 views per image forwarded 32 at a time
  (the default) against 4 at a time, for the ImageNet-shaped MobileNetV2 and
  the ViT at 224 px (the Kronecker projection, so that the forwards dominate);
* torch's thread count (``--sections threads``): the same fit and transform
  with ``num_threads=1``, ``2`` and the default ``"auto"`` (one thread for
  forwards under 1 GFLOP a batch, torch's count otherwise), interleaved: the
  README's quickstart (MobileNetV2 at 32 px on scikit-learn digits, every
  block, fast views), MobileNetV2 at 224 px and a ViT-S/16 at 224 px (paper
  views);
* ``compile`` (with ``--compile``; minutes of compilation on a CPU): the
  backbone's forward through ``torch.compile``, against eager, once compiled;
  the first call, which compiles, is reported on its own.

Models are randomly initialised (timing does not depend on the weights)::

    .venv/bin/python benchmarks/runtime_options.py            # ~5 minutes on 2 cores
    .venv/bin/python benchmarks/runtime_options.py --quick    # ~1 minute
"""

from __future__ import annotations

import argparse
import functools
import tempfile
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from timing import interleaved, medians, timed

from skfungi import FungiTransformer, ImageBackbone, TimmBackbone


def write_jpegs(folder: Path, n_images: int, size: int) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for index in range(n_images):
        # smooth random images compress like photographs, unlike white noise
        small = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((size, size), Image.BICUBIC)
        paths.append(str(folder / f"{index:05d}.jpg"))
        image.save(paths[-1], quality=90)
    return paths


def interleaved_seconds(configs: dict[str, FungiTransformer], inputs, repeats: int) -> dict[str, float]:
    """Median wall seconds of ``transform(inputs)`` per configuration, runs interleaved."""
    for fungi in configs.values():
        fungi.fit(inputs[:2])
        fungi.transform(inputs[:2])  # warm-up
    calls = {name: functools.partial(fungi.transform, inputs) for name, fungi in configs.items()}
    return medians(interleaved(calls, repeats))


def decoding(args, folder: Path) -> list[tuple[str, float, float]]:
    paths = write_jpegs(folder, args.n_images, args.file_size)
    rows = []
    for losses, label in (((), "embedding"), (("kl",), "embedding + KL")):
        configs = {
            workers: FungiTransformer(
                ImageBackbone(torchvision.models.mobilenet_v2(), layer="features.18.0", input_size=args.input_size),
                losses=losses,
                batch_size=args.batch_size,
                num_workers=workers,
                random_state=0,
            )
            for workers in (0, 2)
        }
        seconds = interleaved_seconds(configs, paths, args.repeats)
        for workers in (0, 2):
            ms = 1000 * seconds[workers] / len(paths)
            rows.append((f"MobileNetV2 {label}, num_workers={workers}", ms, seconds[0] / seconds[workers]))
    return rows


def precision(args) -> list[tuple[str, float, float]]:
    images = np.random.default_rng(0).integers(0, 256, (args.n_vit_images, 224, 224, 3), dtype=np.uint8)
    module = TimmBackbone(args.vit, pretrained=False)
    configs = {
        name: FungiTransformer(module, losses=("kl",), batch_size=args.batch_size, precision=name, random_state=0)
        for name in ("float32", "bfloat16", "float16")
    }
    seconds = interleaved_seconds(configs, images, args.repeats)
    return [
        (f"{args.vit} embedding + KL, precision={name}", 1000 * value / len(images), seconds["float32"] / value)
        for name, value in seconds.items()
    ]


def forward_batch(args) -> list[tuple[str, float, float]]:
    images = np.random.default_rng(0).integers(0, 256, (args.n_batch_images, 224, 224, 3), dtype=np.uint8)
    backbones = {
        "MobileNetV2 224 px": ImageBackbone(torchvision.models.mobilenet_v2(), layer="features.18.0", input_size=224),
        args.vit: TimmBackbone(args.vit, pretrained=False),
    }
    rows = []
    for name, backbone in backbones.items():
        configs = {
            size: FungiTransformer(
                backbone,
                losses=("dino",),
                include_embedding=False,
                projection="kronecker",
                batch_size=size,
                random_state=0,
            )
            for size in (32, 4)
        }
        seconds = interleaved_seconds(configs, images, args.repeats)
        rows += [
            (f"{name} DINO (12 views), batch_size={size}", 1000 * value / len(images), seconds[32] / value)
            for size, value in seconds.items()
        ]
    return rows


def thread_counts(args) -> list[tuple[str, float, float]]:
    """fit + transform at num_threads 1, 2 and "auto", runs interleaved; the speed-up is each one's over one thread."""
    from sklearn.datasets import load_digits

    digits = np.repeat(
        (load_digits().images[: args.n_thread_images] * 16).clip(0, 255).astype(np.uint8)[..., None], 3, -1
    )
    photos = np.random.default_rng(0).integers(0, 256, (max(2, args.n_thread_images // 8), 256, 256, 3), dtype=np.uint8)
    workloads = {
        "quickstart: MobileNetV2 32 px, digits, every block, fast views": (
            ImageBackbone(torchvision.models.mobilenet_v2(), layer="features.18.0", input_size=32),
            digits,
            "fast",
        ),
        "MobileNetV2 224 px, every block, paper views": (
            ImageBackbone(torchvision.models.mobilenet_v2(), layer="features.18.0", input_size=224),
            photos,
            "paper",
        ),
        f"{args.vit}, every block, paper views": (TimmBackbone(args.vit, pretrained=False), photos[:2], "paper"),
    }
    rows = []
    for name, (backbone, images, views) in workloads.items():
        calls = {
            setting: functools.partial(fit_and_transform, backbone, images, views, args.batch_size, setting)
            for setting in (1, 2, "auto")
        }
        seconds = medians(interleaved(calls, args.repeats))
        rows += [
            (f"{name}, num_threads={setting!r}", 1000 * value / len(images), seconds[1] / value)
            for setting, value in seconds.items()
        ]
    return rows


def fit_and_transform(backbone, images, views: str, batch_size: int, num_threads) -> None:
    """A fresh transformer's fit and transform with ``num_threads`` (torch's own count stays as it is)."""
    fungi = FungiTransformer(backbone, views=views, batch_size=batch_size, num_threads=num_threads, random_state=0)
    fungi.fit(images).transform(images)


def compiled(args) -> list[tuple[str, float, float]]:
    images = np.random.default_rng(0).integers(0, 256, (args.n_vit_images, 64, 64, 3), dtype=np.uint8)
    configs = {
        flag: FungiTransformer(
            ImageBackbone(torchvision.models.mobilenet_v2(), layer="features.18.0", input_size=64),
            losses=("kl",),
            batch_size=args.batch_size,
            compile=flag,
            random_state=0,
        )
        for flag in (False, True)
    }
    first_call, _ = timed(lambda: configs[True].fit(images[:2]).transform(images))
    seconds = interleaved_seconds(configs, images, args.repeats)
    print(f"compile: the first transform (compiling) took {first_call:.0f} s")
    return [
        (
            f"MobileNetV2 64 px embedding + KL, compile={flag}",
            1000 * seconds[flag] / len(images),
            seconds[False] / seconds[flag],
        )
        for flag in (False, True)
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-images", type=int, default=256, help="JPEG files per transform (quick: 64)")
    parser.add_argument("--file-size", type=int, default=500, help="side of the JPEG files in pixels")
    parser.add_argument("--input-size", type=int, default=96, help="MobileNetV2 input size")
    parser.add_argument("--n-vit-images", type=int, default=32, help="images per transform for precision (quick: 8)")
    parser.add_argument("--vit", default="vit_small_patch16_224", help="timm ViT for the precision rows")
    parser.add_argument("--n-batch-images", type=int, default=8, help="images per transform for batch_size (quick: 2)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--n-thread-images", type=int, default=64, help="digits per run of the threads section")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timed repeats (quick: 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--compile", action="store_true", help="also measure compile=True (minutes on a CPU)")
    parser.add_argument(
        "--sections",
        default="num_workers,precision,batch_size",
        help="comma-separated questions among num_workers, precision, batch_size, threads "
        "(default num_workers,precision,batch_size)",
    )
    parser.add_argument("--quick", action="store_true", help="~1 minute smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_images, args.n_vit_images, args.n_batch_images, args.repeats = 64, 8, 2, 1
        args.n_thread_images = 16
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch_size={args.batch_size}")
    sections = {section.strip() for section in args.sections.split(",")}
    unknown = sections - {"num_workers", "precision", "batch_size", "threads"}
    if unknown:
        parser.error(f"unknown --sections {sorted(unknown)}")
    rows = []
    if "num_workers" in sections:
        with tempfile.TemporaryDirectory() as folder:
            rows += decoding(args, Path(folder))
    if "precision" in sections:
        rows += precision(args)
    if "batch_size" in sections:
        rows += forward_batch(args)
    if "threads" in sections:
        rows += thread_counts(args)
    if args.compile:
        rows += compiled(args)
    width = max(len(name) for name, *_ in rows)
    print(f"{'configuration':<{width}}  ms/image  speed-up vs default")
    for name, ms, ratio in rows:
        print(f"{name:<{width}}  {ms:8.1f}  {ratio:6.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
