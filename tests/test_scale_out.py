"""Scale-out: transform over a Dask distributed cluster, as docs/scale_out.md shows it."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
from conftest import tiny_vit

from skfungi import FungiTransformer, SimCLRLoss, TimmBackbone

distributed = pytest.importorskip("distributed")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def transform_chunk(chunk, fitted):
    """One task: features of one chunk, with the worker process and the identity of its fitted copy."""
    return os.getpid(), id(fitted), fitted.transform(chunk)


def count_unpickling():
    """Run on every worker: count the FungiTransformer objects it unpickles from now on."""
    original = FungiTransformer.__setstate__

    def counting(self, state):
        FungiTransformer.unpickled_on_this_worker += 1
        original(self, state)

    FungiTransformer.unpickled_on_this_worker = 0
    FungiTransformer.__setstate__ = counting


def unpickled_count():
    return FungiTransformer.unpickled_on_this_worker


@pytest.fixture(scope="module")
def client():
    # Functions of this test module travel by value, so workers need not import it.
    import cloudpickle

    cloudpickle.register_pickle_by_value(__import__(__name__))
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    )
    with cluster, distributed.Client(cluster) as client:
        client.run(count_unpickling)
        yield client
    cloudpickle.unregister_pickle_by_value(__import__(__name__))


def test_dask_transform_matches_one_process_and_ships_the_model_once(client, monkeypatch):
    X = np.random.default_rng(0).integers(0, 256, size=(16, 20, 20, 3), dtype=np.uint8)
    fitted = FungiTransformer(
        TimmBackbone(tiny_vit()), losses=("kl", SimCLRLoss(grid_size=3)), batch_size=4, random_state=0
    ).fit(X)
    chunks = np.array_split(X, 8)

    pickled = []
    getstate = FungiTransformer.__getstate__
    monkeypatch.setattr(FungiTransformer, "__getstate__", lambda self: pickled.append(1) or getstate(self))
    shared = client.scatter(fitted, broadcast=True, hash=False)
    futures = client.map(transform_chunk, chunks, fitted=shared)
    results = client.gather(futures)
    monkeypatch.undo()

    # the fitted transformer (backbone weights included) was pickled once, by scatter, and unpickled
    # once per worker; every task of a worker used that one copy
    assert len(pickled) == 1
    assert sorted(client.run(unpickled_count).values()) == [1, 1]
    copies = {}
    for pid, identity, _ in results:
        copies.setdefault(pid, set()).add(identity)
    assert all(len(identities) == 1 for identities in copies.values())

    # identical to one process transforming the same chunks (the workers run one torch thread, as here),
    # and to one process transforming everything at once up to float rounding (batch invariance)
    distributed_features = np.concatenate([features for *_, features in results])
    np.testing.assert_array_equal(distributed_features, np.concatenate([fitted.transform(c) for c in chunks]))
    np.testing.assert_allclose(distributed_features, fitted.transform(X), rtol=1e-5, atol=1e-6)
