"""Timing and memory measurements, one way for every benchmark script.

A benchmark on a shared machine compares what it compares side by side:
:func:`interleaved` runs the candidates in turn (A, B, A, B, ...), so that a
slow spell of the machine hits them alike, and :func:`fastest` or
:func:`medians` sums up each candidate's repeats. Other jobs can only slow a
run down, never speed it up, so the fastest repeat is the least disturbed
one; the median is the robust middle. Every clock is read after the
accelerator's queued work is done (:func:`synchronize`), so that GPU time is
counted where it was asked for.

:func:`stopwatch` times a block: wall seconds, process CPU seconds (which,
at one torch thread, other processes on the machine do not inflate) and the
minor page faults (memory the allocator got fresh from the kernel, each
costing system time).

Memory comes from Linux's ``/proc/self/status``: the resident set (VmRSS) and
its high-water mark (VmHWM). :func:`reset_peak_rss` resets the mark to the
current RSS (Linux >= 4.0), so that the extra peak of one step can be read;
:func:`process_peak_rss_mb` still knows the whole run's peak. Nothing here
imports torch unless a device is given, so that the neighbour benchmarks
measure their memory without it.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = [
    "Elapsed",
    "current_rss_mb",
    "fastest",
    "interleaved",
    "medians",
    "peak_rss_mb",
    "process_peak_rss_mb",
    "reset_peak_rss",
    "stopwatch",
    "synchronize",
    "timed",
]


def synchronize(device=None) -> None:
    """Wait until a CUDA ``device`` has done its queued work (nothing for the CPU or ``None``)."""
    if device is None:
        return
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Elapsed:
    """What :func:`stopwatch` measured: wall and process CPU seconds, minor page faults."""

    wall: float = 0.0
    cpu: float = 0.0
    page_faults: int = 0


@contextmanager
def stopwatch(device=None) -> Iterator[Elapsed]:
    """Time the ``with`` block; the yielded :class:`Elapsed` is filled in when the block ends."""
    elapsed = Elapsed()
    synchronize(device)
    faults = _minor_page_faults()
    wall, cpu = time.perf_counter(), time.process_time()
    yield elapsed
    synchronize(device)
    elapsed.wall = time.perf_counter() - wall
    elapsed.cpu = time.process_time() - cpu
    elapsed.page_faults = _minor_page_faults() - faults


def timed(function: Callable, *args, device=None, **kwargs) -> tuple[float, object]:
    """Wall seconds of ``function(*args, **kwargs)``, and what it returned."""
    with stopwatch(device) as elapsed:
        result = function(*args, **kwargs)
    return elapsed.wall, result


def interleaved(
    calls: Mapping[Hashable, Callable[[], object]],
    repeats: int,
    device=None,
    on_repeat: Callable[[int, dict], None] | None = None,
) -> dict[Hashable, list[float]]:
    """Wall seconds of each call, ``repeats`` times, the calls run in turn (A, B, A, B, ...).

    ``on_repeat(repeat, times)`` is called after each round, e.g. to print it.
    """
    times = {key: [] for key in calls}
    for repeat in range(repeats):
        for key, call in calls.items():
            times[key].append(timed(call, device=device)[0])
        if on_repeat is not None:
            on_repeat(repeat, times)
    return times


def fastest(times: Mapping[Hashable, list[float]]) -> dict[Hashable, float]:
    """The fastest repeat of each candidate: the least disturbed by other jobs."""
    return {key: min(values) for key, values in times.items()}


def medians(times: Mapping[Hashable, list[float]]) -> dict[Hashable, float]:
    """The median repeat of each candidate."""
    return {key: statistics.median(values) for key, values in times.items()}


# -- memory (Linux /proc) ----------------------------------------------------------------------

_peak_before_resets_mb = 0.0  # the high-water marks that reset_peak_rss cleared


def current_rss_mb() -> float | None:
    """The resident set size now, in MiB (None where /proc is absent)."""
    return _proc_status_mb("VmRSS")


def peak_rss_mb() -> float | None:
    """The resident set's high-water mark since the process started or the last :func:`reset_peak_rss`."""
    return _proc_status_mb("VmHWM")


def reset_peak_rss() -> bool:
    """Reset the high-water mark to the current RSS; False where the kernel does not allow it."""
    global _peak_before_resets_mb
    _peak_before_resets_mb = max(_peak_before_resets_mb, peak_rss_mb() or 0.0)
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def process_peak_rss_mb() -> float:
    """The whole run's peak RSS: ``ru_maxrss`` and every high-water mark seen before a reset
    (resetting VmHWM also resets what ``ru_maxrss`` reports for a live process)."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return max(maxrss, _peak_before_resets_mb, peak_rss_mb() or 0.0)


def _proc_status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _minor_page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
