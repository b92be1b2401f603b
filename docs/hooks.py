"""MkDocs hooks of the skfungi site (``hooks:`` in mkdocs.yml).

- The pipeline figure of how_fungi_works.md is drawn at build time by
  ``docs/figures/fungi_diagram.py``, so it cannot drift from its script.
- getting_started.md includes the README's set-up section (between the
  ``<!-- setup:start -->`` and ``<!-- setup:end -->`` markers), with the
  README's ``docs/...`` links made relative to the docs folder and its
  2-space list indentation doubled (Python-Markdown nests lists by 4 spaces).
- The gallery runs its examples in this process; their models are tiny, for
  which one torch thread is faster than several (a busy 2-core machine made
  small multi-threaded calls several times slower).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import torch
from mkdocs.structure.files import File

torch.set_num_threads(1)

DOCS = Path(__file__).resolve().parent
README = DOCS.parent / "README.md"
FIGURE = "figures/fungi_diagram.svg"
README_SECTION = re.compile(r"<!-- setup:start -->\n(.*?)<!-- setup:end -->", re.DOTALL)
INCLUDE_MARKER = "<!-- include README set-up -->"


def _diagram_svg() -> str:
    spec = importlib.util.spec_from_file_location("fungi_diagram", DOCS / "figures" / "fungi_diagram.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.fungi_diagram_svg()


def on_files(files, config):
    files.append(File.generated(config, FIGURE, content=_diagram_svg()))
    return files


def on_page_markdown(markdown, page, config, files):
    if INCLUDE_MARKER not in markdown:
        return markdown
    found = README_SECTION.search(README.read_text(encoding="utf-8"))
    if found is None:
        raise ValueError(f"{README} lacks the <!-- setup:start --> ... <!-- setup:end --> markers.")
    section = found.group(1).replace("](docs/", "](")
    section = re.sub(r"^( +)", r"\1\1", section, flags=re.MULTILINE)
    return markdown.replace(INCLUDE_MARKER, section)
