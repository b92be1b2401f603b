"""skfungi against the authors' library (fungivision 0.0.2), side by side in one process.

Both get the same timm ViT (one deep copy each, identical weights: the
reference library hooks and freezes the module it is given), the same
random images (PIL images for the reference, the same pixels as an array for
skfungi), the same number of images per call, the same precision and the
same loss settings: KL (temperature 15, latent 768), DINO (2 global + 10
local crops at the input size, latent 2048), SimCLR (49 patches of half the
input side, stride 1/6 of it, latent 96, a bank of ``--negatives`` images in
both) and all three. Neither adds the embedding block: the reference library
does not compute it. The baseline is the plain embedding forward of the same
images (``model(x)`` under ``torch.no_grad`` on preprocessed batches).
Configurations are interleaved (embedding, reference, skfungi, embedding,
...) and the fastest repeat of each is kept.

fungivision is an optional benchmark dependency (``pip install
fungivision==0.0.2``); skfungi never imports it.

Usage::

    .venv/bin/python benchmarks/reference.py --threads 1                 # ViT-S/16, 16 images, ~15 min on a CPU
    .venv/bin/python benchmarks/reference.py --configs kl,dino --repeats 3 --projection rademacher,srht
    .venv/bin/python benchmarks/reference.py --device cuda --model vit_base_patch16_224 --images 64 \\
        --precision bfloat16
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import platform
from pathlib import Path

import numpy as np
import torch
from presets import model_overrides
from timing import fastest, interleaved

from skfungi import FungiTransformer, TimmBackbone
from skfungi.losses import DINOLoss, KLLoss, SimCLRLoss

CONFIGS = {"kl": ("kl",), "dino": ("dino",), "simclr": ("simclr",), "kl+dino+simclr": ("kl", "dino", "simclr")}
KL_TEMPERATURE = 15  # the paper's runs (fungivision's default is 1; the cost is the same)
LATENT = {"kl": 768, "dino": 2048, "simclr": 96}


def skfungi_transformer(model, losses, negatives: int, projection: str, args) -> FungiTransformer:
    objects = {
        "kl": KLLoss(temperature=KL_TEMPERATURE, latent_dim=LATENT["kl"]),
        "dino": DINOLoss(latent_dim=LATENT["dino"]),
        "simclr": SimCLRLoss(latent_dim=LATENT["simclr"], n_negatives=negatives),
    }
    return FungiTransformer(
        TimmBackbone(model),
        losses=tuple(objects[name] for name in losses),
        layer=args.layer,
        include_embedding=False,
        projection=projection,
        batch_size=args.images,
        device=args.device,
        precision=args.precision,
        random_state=0,
    )


def reference_wrapper(model, losses, dataset, args):
    from fungivision.config import DINOConfig, KLConfig, SimCLRConfig
    from fungivision.wrapper import FUNGIWrapper

    configs = {
        "kl": KLConfig(temperature=KL_TEMPERATURE, latent_dim=LATENT["kl"]),
        "dino": DINOConfig(latent_dim=LATENT["dino"]),
        "simclr": SimCLRConfig(
            latent_dim=LATENT["simclr"],
            num_patches=4,
            stride_scale=6,
            comparison_batch_size=len(dataset),
            comparison_batch_encoding_batch_size=args.images,
        ),
    }
    torch.manual_seed(0)  # the reference draws its heads, projection and bank from torch's global generator
    wrapper = FUNGIWrapper(
        model=model,
        target_layer=args.layer,
        device=torch.device(args.device),
        input_dim=args.input_size,
        use_fp16=args.precision == "bfloat16",
        extractor_configs=[configs[name] for name in losses],
    )
    wrapper.setup(dataset=dataset)
    return wrapper


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vit_small_patch16_224", help="timm model name, random weights")
    parser.add_argument("--model-args", default="", help="timm create_model overrides, e.g. depth=1,embed_dim=32")
    parser.add_argument("--layer", default=None, help="target layer (default: the adapter's, the last attn.proj)")
    parser.add_argument("--images", type=int, default=16, help="images per call (and per batch)")
    parser.add_argument("--negatives", type=int, default=16, help="SimCLR bank images (both libraries)")
    parser.add_argument("--image-side", type=int, default=256, help="side of the random square images (default 256)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"among {', '.join(CONFIGS)}")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument(
        "--projection",
        default=inspect.signature(FungiTransformer).parameters["projection"].default,
        help="skfungi's projections, comma-separated, each timed (default: the library's; the reference's is dense)",
    )
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from PIL import Image
    from timm import create_model

    torch.manual_seed(0)
    model = create_model(args.model, pretrained=False, num_classes=0, **model_overrides(args.model_args)).eval()
    backbone = TimmBackbone(model)
    args.layer = args.layer or backbone.default_layer
    args.input_size = backbone.input_size
    rng = np.random.default_rng(0)
    side = args.image_side
    pixels = rng.integers(0, 256, size=(args.images + args.negatives, side, side, 3), dtype=np.uint8)
    images, bank = pixels[: args.images], pixels[args.images :]
    pil_images = [Image.fromarray(image) for image in images]
    dataset = [(Image.fromarray(image), 0) for image in bank]

    samples = backbone.as_samples(images)
    inputs = torch.stack([backbone.inference_view(backbone.canonical(samples[i], i)) for i in range(len(images))])
    inputs = inputs.to(args.device)
    model.to(args.device)

    def embedding():
        with (
            torch.no_grad(),
            torch.autocast(torch.device(args.device).type, torch.bfloat16, args.precision != "float32"),
        ):
            model(inputs)

    rows = []
    for name in args.configs.split(","):
        rows += compare(name, model, embedding, images, pil_images, bank, dataset, args)
    results = {
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} thread(s), {args.device}",
        "model": args.model,
        "images": args.images,
        "image_side": args.image_side,
        "negatives": args.negatives,
        "precision": args.precision,
        "projection": args.projection,
        "repeats": args.repeats,
        "rows": rows,
    }
    print(
        f"\n{results['machine']}; {args.model} (random weights), {args.images} images per call, {args.precision}, "
        f"skfungi's projection: {args.projection}"
    )
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


def compare(name, model, embedding, images, pil_images, bank, dataset, args) -> list[dict]:
    """Fastest seconds per image of the embedding, the reference and skfungi (one row per projection)
    for one loss set, interleaved."""
    losses = CONFIGS[name]
    theirs = reference_wrapper(copy.deepcopy(model), losses, dataset, args)
    calls = {"embedding": embedding, "fungivision": lambda: theirs(pil_images)}
    for projection in args.projection.split(","):
        ours = skfungi_transformer(model, losses, args.negatives, projection, args).fit(bank)
        calls[f"skfungi {projection}"] = lambda ours=ours: ours.transform(images)

    def report(repeat: int, times: dict) -> None:
        print(f"  {name} repeat {repeat}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)

    times = interleaved(calls, args.repeats, args.device, on_repeat=report)
    best = {key: seconds / args.images for key, seconds in fastest(times).items()}
    return [
        {
            "config": name,
            "projection": key.removeprefix("skfungi "),
            "seconds_per_image": {"embedding": best["embedding"], "fungivision": best["fungivision"], "skfungi": value},
            "fungivision_x_embedding": best["fungivision"] / best["embedding"],
            "skfungi_x_embedding": value / best["embedding"],
            "speedup": best["fungivision"] / value,
            "all_seconds": times,
        }
        for key, value in best.items()
        if key.startswith("skfungi ")
    ]


def markdown(rows: list[dict]) -> str:
    lines = [
        "| losses | skfungi projection | embedding s / image | fungivision s / image | x embedding "
        "| skfungi s / image | x embedding | skfungi speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        seconds = row["seconds_per_image"]
        lines.append(
            f"| {row['config']} | {row['projection']} | {seconds['embedding']:.4f} | {seconds['fungivision']:.3f} | "
            f"{row['fungivision_x_embedding']:.2f}x | {seconds['skfungi']:.3f} | {row['skfungi_x_embedding']:.2f}x | "
            f"**{row['speedup']:.2f}x** |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
