"""What the command-line tests share: a tiny random timm ViT by spec, image folders, running the command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer

from skfungi import FungiTransformer, cli


@register_model
def skfungi_cli_test_vit(pretrained=False, **kwargs):
    """A tiny random ViT for ``--backbone timm:skfungi_cli_test_vit?pretrained=false`` (16 px, width 12)."""
    return VisionTransformer(img_size=16, patch_size=8, embed_dim=12, depth=2, num_heads=2, num_classes=0)


BACKBONE = "timm:skfungi_cli_test_vit?pretrained=false"
# timm's own test ViT (160 px, width 64), known to a fresh process too: for runs in a subprocess
SUBPROCESS_BACKBONE = "timm:test_vit?pretrained=false"


def write_images(folder: Path, counts: dict[str, int], seed: int = 0) -> list[Path]:
    """``counts[class]`` small RGB PNGs of varied sizes per class sub-folder ("" = top level)."""
    rng = np.random.default_rng(seed)
    paths = []
    for label, count in counts.items():
        (folder / label).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            path = folder / label / f"img{index}.png"
            Image.fromarray(rng.integers(0, 256, (18 + index, 20, 3), dtype=np.uint8)).save(path)
            paths.append(path)
    return sorted(paths, key=lambda path: path.relative_to(folder).as_posix())


def extract(input_path, output, *options, backbone: str | None = BACKBONE) -> int:
    """``skfungi extract INPUT -o OUTPUT --backbone <tiny ViT> -q <options>`` in this process."""
    options = [str(option) for option in options]
    chosen = [] if backbone is None else ["--backbone", backbone]
    return cli.main(["extract", str(input_path), "-o", str(output), *chosen, "-q", *options])


def library_features(fit_inputs, inputs, losses=("kl",), seed=0):
    """What the Python API gives for the same settings (random weights seeded as the command seeds them)."""
    fungi = FungiTransformer(BACKBONE, losses=losses, random_state=seed, modality="image")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fungi.fit(fit_inputs)
    return fungi.transform(inputs), fungi.get_feature_names_out().tolist()


def error_line(capsys) -> str:
    """The command's stderr, which must be one line without a traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("skfungi: error: ")
    return lines[0]


def command_process(*arguments, env: dict | None = None, **popen) -> subprocess.Popen:
    """``python -m skfungi <arguments>`` in a new process with one torch thread (features match this process's)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "skfungi", *map(str, arguments)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def files_under(folder: Path) -> list[str]:
    """Every path under ``folder``, relative and sorted (what a command left behind)."""
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*"))
