"""``python -m skfungi``: the ``skfungi`` command line (see :mod:`skfungi.cli`)."""

import sys

from .cli import main

sys.exit(main())
