"""Evidence on real pretrained models: the paper's kNN protocol, every loss combination, with controls.

The harness is :mod:`skfungi.evidence` (also ``skfungi accuracy``); this script runs it with the same
options. ``make accuracy`` installs the assets and runs the full benchmark::

    .venv/bin/python benchmarks/accuracy.py --quick          # ~5 min subset
    .venv/bin/python benchmarks/accuracy.py --plot docs/accuracy_few_shot.png --markdown /tmp/accuracy.md
"""

import sys

from skfungi.evidence import main

if __name__ == "__main__":
    sys.exit(main())
