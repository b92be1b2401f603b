"""How many torch threads a fit or transform uses: one for small forwards, unless told otherwise.

torch runs each operation on its intra-op thread pool (by default one thread
per core), and every parallel operation ends at a barrier where the threads
wait for each other. A forward of a small model on small images is a long
chain of small operations: on two idle cores a second thread saves little
(the README's quickstart, forwards of 0.47 GFLOPs: 1.05x), while on a
machine where another job holds a core each barrier waits for the
descheduled thread, and the same run took 128 times longer (measured side by
side in ``benchmarks/runtime_options.py``, docs/benchmarks.md). Large
forwards gain from threads (MobileNetV2 at 224 px: 1.7x on two idle cores).

So ``num_threads="auto"`` (:func:`thread_count`) runs a call whose largest
forward, ``batch_size`` views at the FLOPs of the inference view (counted
once, in ``fit``, by ``torch.utils.flop_counter``), stays under
:data:`SMALL_FORWARD_FLOPS` at one thread, and leaves larger ones at torch's
count (``torch.set_num_threads``). An int sets the count for the call; None
leaves torch's setting alone. The count is restored after the call. The
choice depends only on the model, the input size and ``batch_size``, never on
the data or the machine's load, so features stay repeatable (see
docs/guarantees.md for what a thread count changes).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["SMALL_FORWARD_FLOPS", "counted_flops", "thread_count", "torch_threads"]

SMALL_FORWARD_FLOPS = 1e9


def counted_flops(run_forward):
    """``(run_forward(), the floating-point operations it performed)``; the count is None where the counter
    cannot trace the forward (a compiled or exotic module), which then runs once more without it."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with FlopCounterMode(display=False) as counter:
            output = run_forward()
    except Exception:
        return run_forward(), None
    return output, float(counter.get_total_flops())


def thread_count(setting, flops_per_view: float | None, batch_size: int) -> int | None:
    """The torch threads a call runs with for ``num_threads=setting`` (None: torch's own count, unchanged)."""
    if setting is None or isinstance(setting, int):
        return setting
    if flops_per_view is not None and flops_per_view * batch_size < SMALL_FORWARD_FLOPS:
        return 1
    return None


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``count`` inside the block (None: unchanged), restored afterwards."""
    if count is None or count == torch.get_num_threads():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
