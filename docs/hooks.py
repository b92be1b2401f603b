"""MkDocs hooks of the skfungi site (``hooks:`` in mkdocs.yml).

The gallery runs its examples in this process; their models are tiny, for which
one torch thread is faster than several (on a busy 2-core CPU, small
multi-threaded calls were several times slower).
"""

from __future__ import annotations

import torch

torch.set_num_threads(1)
