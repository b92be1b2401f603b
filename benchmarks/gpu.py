"""The GPU run: preset throughput and the comparison with the reference library, one JSON + one Markdown file.

On a CUDA machine, with skfungi installed (``make install``) and the
reference library (``pip install fungivision==0.0.2``)::

    .venv/bin/python benchmarks/gpu.py --json gpu.json --markdown gpu.md

runs, for each model (default timm ViT-S/16 and ViT-B/16, random weights:
the cost does not depend on them) and each precision (float32, bfloat16):

- ``presets.py``: ``transform`` of ``--images`` images with
  ``batch_size=--batch-size`` for embedding + KL, DINO, SimCLR and
  KL + DINO + SimCLR, with ``views="paper"`` and ``views="fast"``, against
  the plain embedding forward of the same images at the same precision;
  targets: KL + DINO + SimCLR (with the embedding) at most 66x the
  embedding with the paper's views (the reference library: about 85-90x on
  a GPU), at most 12x with ``"fast"``;
- ``reference.py``: skfungi against fungivision on the same module, images
  and batch size for KL, DINO, SimCLR and all three.

``--dry-run`` runs the same code on the CPU with a tiny ViT and one or two
images (a check that the script works, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import presets
import reference
import torch

PRECISIONS = ("float32", "bfloat16")
TARGETS = {"paper": 66.0, "fast": 12.0}  # KL + DINO + SimCLR with the embedding, x the embedding forward
ALL_LOSSES = "emb+kl+dino+simclr"
DRY_RUN_MODEL = "depth=1,embed_dim=32,num_heads=2"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", default="vit_small_patch16_224,vit_base_patch16_224")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--negatives", type=int, default=64, help="SimCLR bank images (fit only)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--reference-projections", default="rademacher,srht", help="skfungi's, against the reference")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads (views, host work)")
    parser.add_argument("--json", default="gpu.json")
    parser.add_argument("--markdown", default="gpu.md")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny ViT, 1-2 images: checks the script")
    args = parser.parse_args(argv)
    model_args = ""
    if args.dry_run:
        args.device, args.models, model_args = "cpu", "vit_small_patch16_224", DRY_RUN_MODEL
        args.images = args.batch_size = args.negatives = 2
        args.repeats, args.threads = 1, 1
    elif not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU machine, or pass --dry-run to check the script on the CPU")
    results = {"machine": machine(args.device), "dry_run": args.dry_run, "presets": [], "reference": []}
    for model in args.models.split(","):
        for precision in PRECISIONS:
            common = ["--device", args.device, "--precision", precision, "--repeats", str(args.repeats)]
            common += ["--threads", str(args.threads), "--model-args", model_args, "--images", str(args.images)]
            common += ["--negatives", str(args.negatives)]
            preset_run = presets.main([*common, "--backbones", model, "--batch-size", str(args.batch_size)])
            results["presets"].append({"model": model, "precision": precision, **preset_run["backbones"][model]})
            reference_run = reference.main([*common, "--model", model, "--projection", args.reference_projections])
            results["reference"].append({"model": model, "precision": precision, "rows": reference_run["rows"]})
    Path(args.json).write_text(json.dumps(results, indent=2))
    Path(args.markdown).write_text(markdown(results))
    print(markdown(results))
    return results


def machine(device: str) -> str:
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else platform.processor() or "CPU"
    return f"{name}, torch {torch.__version__}"


def markdown(results: dict) -> str:
    lines = [f"Machine: {results['machine']}" + (" (dry run: not a measurement)" if results["dry_run"] else ""), ""]
    lines += [
        "| model | precision | views | losses | s / image | x embedding | target | result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in results["presets"]:
        for row in run["rows"]:
            target = TARGETS.get(row["preset"]) if row["losses"] == ALL_LOSSES else None
            verdict = "" if target is None else ("PASS" if row["ratio_to_embedding"] <= target else "FAIL")
            lines.append(
                f"| {run['model']} | {run['precision']} | {row['preset']} | {row['losses']} | "
                f"{row['seconds_per_image']:.4f} | {row['ratio_to_embedding']:.1f}x | "
                f"{'' if target is None else f'<= {target:.0f}x'} | {verdict} |"
            )
    lines += [
        "",
        "| model | precision | losses | skfungi projection | fungivision x embedding | skfungi x embedding "
        "| skfungi speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in results["reference"]:
        for row in run["rows"]:
            lines.append(
                f"| {run['model']} | {run['precision']} | {row['config']} | {row['projection']} | "
                f"{row['fungivision_x_embedding']:.1f}x | "
                f"{row['skfungi_x_embedding']:.1f}x | {row['speedup']:.2f}x |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
