"""The evidence harness of ``benchmarks/accuracy.py``: FUNGI on real pretrained models, with controls.

* :mod:`.data` -- the pairs (backbone x data set) built from installed assets, and their OS paths;
* :mod:`.harness` -- every block once per pair (cached on disk), then every feature set and its
  no-gradient control scored with :mod:`skfungi.protocols` on random stratified splits;
* :mod:`.report` -- Markdown tables and the few-shot plot;
* :mod:`.cli` -- the command line (``main``).
"""
