"""MkDocs hooks of the skfungi site (``hooks:`` in mkdocs.yml).

- The pipeline figure of the home page and how_fungi_works.md is drawn at
  build time by ``docs/figures/fungi_diagram.py``, so it cannot drift from
  its script.
- The gallery runs its examples in this process; their models are tiny, for
  which one torch thread is faster than several (a busy 2-core machine made
  small multi-threaded calls several times slower).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from mkdocs.structure.files import File

torch.set_num_threads(1)

DOCS = Path(__file__).resolve().parent
FIGURE = "figures/fungi_diagram.svg"


def _diagram_svg() -> str:
    spec = importlib.util.spec_from_file_location(
        "fungi_diagram", DOCS / "figures" / "fungi_diagram.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.fungi_diagram_svg()


def on_files(files, config):
    files.append(File.generated(config, FIGURE, content=_diagram_svg()))
    return files
