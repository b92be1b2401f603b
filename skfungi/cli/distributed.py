"""``skfungi extract --workers N`` / ``--scheduler ADDRESS``: the chunks of an extraction as tasks of a Dask cluster.

The command fits (or loads) the transformer on the client, exactly as in one
process; then this module

1. ships the fitted transformer to every worker once: a worker plugin carries
   its pickle, and each worker unpickles it when the plugin reaches it (a
   worker that joins later, or is restarted after dying, included); every
   task of a worker uses that one copy;
2. reads each pending chunk's samples on the client (workers need no access
   to INPUT, only skfungi and the backbone's package) and submits one task per
   chunk, ``transform(samples)``, keeping about two chunks per worker thread in
   flight, so that the client never holds more than those;
3. writes each finished chunk to ``OUTPUT.parts/`` as it arrives, in the chunk
   store's format (the digest of the transformer that computed it, a
   checksum): a rerun, with or without a cluster, does only the missing
   chunks, and OUTPUT is written from the chunks as in one process;
4. moves the one progress bar by each finished chunk's samples.

A chunk's features are ``fungi.transform(samples)`` on the same samples with
the same pickled transformer as in one process, so they are bit for bit the
same at the same torch thread count. A worker that dies loses only the task it
was running: the scheduler runs it again on another worker (up to Dask's
``distributed.scheduler.allowed-failures`` times, 3 by default), and every chunk
already written is kept.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import pickle
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from .errors import CommandError

try:
    from distributed import WorkerPlugin
except ImportError:  # without the [distributed] extra; check_available says how to install it
    WorkerPlugin = object

__all__ = ["INSTALL_HINT", "ShippedTransformer", "check_available", "shipped_copies", "transform_on_cluster"]

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'skfungi[distributed]' (or pip install 'dask[distributed]')"
CHUNKS_PER_THREAD = 2  # chunks in flight per worker thread: one running, one queued behind it

# in a worker process: the transformers shipped to it, by digest, and a lock each (a transformer's forward hooks
# are its own: two threads of one worker must not transform with it at once)
_TRANSFORMERS: dict[str, object] = {}
_LOCKS: dict[str, threading.Lock] = {}
_COPIES: Counter = Counter()


def check_available(option: str) -> None:
    """Raise a CommandError saying how to install Dask's distributed scheduler if it is missing."""
    if importlib.util.find_spec("distributed") is None:
        raise CommandError(f"{option} runs the extraction on a Dask cluster, which needs Dask: {INSTALL_HINT}.")


class ShippedTransformer(WorkerPlugin):
    """A worker plugin carrying a fitted transformer's pickle; each worker unpickles it once, at setup.

    The scheduler keeps the plugin and hands it to every worker that joins,
    so a worker restarted after a crash gets the transformer again.
    """

    def __init__(self, payload: bytes, digest: str):
        self.payload = payload
        self.digest = digest
        self.name = f"skfungi-transformer-{digest}"

    def setup(self, worker) -> None:
        _TRANSFORMERS[self.digest] = pickle.loads(self.payload)
        _LOCKS.setdefault(self.digest, threading.Lock())
        _COPIES[self.digest] += 1
        self.payload = None  # this worker's copy of the plugin: the unpickled transformer is what it needs

    def teardown(self, worker) -> None:
        _TRANSFORMERS.pop(self.digest, None)


def shipped_copies() -> dict[str, int]:
    """In a worker process: how many times each transformer (by digest) was unpickled there."""
    return dict(_COPIES)


def transform_chunk(digest: str, samples: list, threads: int | None) -> np.ndarray:
    """The task of one chunk, run on a worker: the features of ``samples`` by the shipped transformer."""
    fungi = _TRANSFORMERS.get(digest)
    if fungi is None:
        raise RuntimeError(f"this worker holds no fitted transformer {digest}: the skfungi worker plugin did not run.")
    with _LOCKS[digest]:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        return fungi.transform(samples)


@contextmanager
def cluster_client(workers: int | None, scheduler: str | None) -> Iterator:
    """A Dask client of the scheduler at ``scheduler``, or of a local cluster of ``workers`` processes."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler)
        except (OSError, ValueError) as error:
            raise CommandError(f"cannot reach the Dask scheduler at {scheduler!r}: {error}") from error
        with client:
            yield client
        return
    # One thread per worker process: torch parallelises within a process, and Dask's nannies start the
    # workers with OMP_NUM_THREADS=1, so each runs one torch thread unless --threads says otherwise.
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    )
    with cluster, Client(cluster) as client:
        yield client


@contextmanager
def shipped(client, fungi, digest: str) -> Iterator[None]:
    """``fungi`` on every worker of ``client`` during the block (pickled once here), removed from them at its end."""
    plugin = ShippedTransformer(pickle.dumps(fungi, protocol=pickle.HIGHEST_PROTOCOL), digest)
    client.register_plugin(plugin)
    try:
        yield
    finally:
        try:
            client.unregister_worker_plugin(plugin.name)
        except Exception as error:  # a scheduler that went away: nothing left to clean
            logger.debug("could not remove the transformer from the workers: %s", error)


def transform_on_cluster(
    store, fungi, source, args: argparse.Namespace, bars, refuse_unreadable: Callable, pending: list[int]
) -> None:
    """Transform the ``pending`` chunks of ``store`` on a Dask cluster (``args.workers`` or ``args.scheduler``)."""
    import dask
    from distributed import as_completed
    from distributed.client import FutureCancelledError

    digest = store.transformer[1]
    with (
        dask.config.set({"distributed.admin.large-graph-warning-threshold": "4GB"}),  # a chunk's samples travel
        cluster_client(args.workers, args.scheduler) as client,
        shipped(client, fungi, digest),
    ):
        threads = sum(client.nthreads().values())
        logger.info(
            "transforming %d chunk(s) on the Dask cluster at %s (%d worker(s), %d thread(s))",
            len(pending),
            client.scheduler.address,
            len(client.nthreads()),
            threads,
        )
        queue = iter(pending)
        running = as_completed()
        submitted = {}  # future key -> (chunk, kept rows, failed rows)
        run = uuid.uuid4().hex[:8]

        def fill() -> None:
            window = CHUNKS_PER_THREAD * max(1, sum(client.nthreads().values()))
            while running.count() < window:
                chunk = next(queue, None)
                if chunk is None:
                    return
                samples, kept, failed = source.load(store.chunk_range(chunk))
                refuse_unreadable(source, failed, args.on_error)
                if not kept:  # nothing readable in this chunk: nothing to compute
                    store.write_chunk(chunk, kept, np.zeros((0, fungi.n_features_out_), np.float32), failed)
                    bars("transform", len(failed))
                    continue
                future = client.submit(
                    transform_chunk, digest, samples, args.threads, key=f"skfungi-chunk-{chunk}-{run}", pure=False
                )
                submitted[future.key] = (chunk, kept, failed)
                running.add(future)

        fill()
        try:
            for future in running:
                chunk, kept, failed = submitted.pop(future.key)
                features = _result(future, store.chunk_range(chunk), FutureCancelledError)
                store.write_chunk(chunk, kept, features, failed)
                bars("transform", len(store.chunk_range(chunk)))
                future.release()
                fill()
        finally:
            unfinished = [future for future in running.futures]
            if unfinished:
                client.cancel(unfinished)


def _result(future, rows: range, cancelled: type) -> np.ndarray:
    """The features a chunk's task returned; a task that killed its workers, or was cancelled, in plain words."""
    from distributed import KilledWorker

    try:
        return future.result()
    except KilledWorker as error:
        raise CommandError(
            f"the workers running the chunk of rows {rows.start}-{rows.stop - 1} died ({error}); the finished "
            "chunks are kept: rerun the same command to continue."
        ) from error
    except cancelled as error:
        raise CommandError(
            f"the Dask cluster cancelled the chunk of rows {rows.start}-{rows.stop - 1} ({error}); the finished "
            "chunks are kept: rerun the same command to continue."
        ) from error
