"""Removed: ``skfungi.evidence`` moved out of the package. Any name imported from it raises an ImportError
that says where it went.

* Measuring FUNGI on your own data (every block against its no-gradient
  control, on random splits, with a verdict): :func:`skfungi.evaluation.evaluate`,
  or ``skfungi evaluate`` from the shell; pairing two runs:
  :func:`skfungi.evaluation.compare_runs`.
* The project's three evidence pairs (MobileNetV2 x Fashion-MNIST, MiniLM x
  Rotten Tomatoes, Resemblyzer x spoken prompts): ``benchmarks/evidence/`` of
  the repository, run by ``benchmarks/accuracy.py`` (see docs/benchmarks.md).
"""

from __future__ import annotations

__all__: list[str] = []

MOVED = (
    "skfungi.evidence was removed. To measure FUNGI on your own data use skfungi.evaluation.evaluate (or the "
    "command `skfungi evaluate`), and skfungi.evaluation.compare_runs to pair two runs; the project's three "
    "evidence pairs live in the repository's benchmarks/evidence, run by benchmarks/accuracy.py (docs/evaluate.md, "
    "docs/benchmarks.md)."
)


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    raise ImportError(f"cannot import {name!r}: {MOVED}")
