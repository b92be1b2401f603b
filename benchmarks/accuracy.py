"""Evidence on real pretrained models: the paper's protocols, every loss combination, with controls.

The harness is the package ``benchmarks/evidence``; this script is its command line.
``make accuracy`` installs the assets and runs the full benchmark::

    .venv/bin/python benchmarks/accuracy.py --quick          # ~5 min subset
    .venv/bin/python benchmarks/accuracy.py --plot docs/accuracy_few_shot.png --markdown /tmp/accuracy.md
    .venv/bin/python benchmarks/accuracy.py --help
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: the benchmarks package

from benchmarks.evidence.cli import main

if __name__ == "__main__":
    sys.exit(main())
