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


# -- skfungi.dask.transform: dask.array, dask.bag and dask.dataframe columns ------------------------------------


def test_dask_collections_are_transformed_block_by_block_with_one_copy_of_the_model(client, monkeypatch, tmp_path):
    import dask.array as da
    import dask.bag as db
    import dask.dataframe as dd
    import pandas as pd
    from PIL import Image

    from skfungi.dask import transform

    X = np.random.default_rng(1).integers(0, 256, size=(12, 20, 20, 3), dtype=np.uint8)
    fitted = FungiTransformer(TimmBackbone(tiny_vit()), losses=("kl",), batch_size=4, random_state=0).fit(X)
    paths = []
    for index, image in enumerate(X):
        paths.append(str(tmp_path / f"{index}.png"))
        Image.fromarray(image).save(paths[-1])
    expected = np.concatenate([fitted.transform(X[start : start + 5]) for start in (0, 5, 10)])  # blocks 5, 5, 2

    pickled = []
    getstate = FungiTransformer.__getstate__
    monkeypatch.setattr(FungiTransformer, "__getstate__", lambda self: pickled.append(1) or getstate(self))
    from_array = transform(fitted, da.from_array(X, chunks=(5, 10, 20, 3)))  # rechunked to whole images
    assert from_array.shape == (12, fitted.n_features_out_) and from_array.chunks[0] == (5, 5, 2)
    np.testing.assert_array_equal(from_array.compute(), expected)
    # not once per block: once in the graph the client sends, once by the scheduler (in this process, with a
    # LocalCluster) sending that one task to the worker that holds it; other workers fetch it from there
    assert len(pickled) == 2
    pickled.clear()
    transform(fitted, da.from_array(X, chunks=(2, 20, 20, 3))).compute()  # 6 blocks
    assert len(pickled) == 2

    from_bag = transform(fitted, db.from_sequence(paths, npartitions=3)).compute()  # 4 files per partition
    np.testing.assert_array_equal(from_bag, np.concatenate([fitted.transform(paths[i : i + 4]) for i in (0, 4, 8)]))

    table = dd.from_pandas(pd.DataFrame({"path": paths, "label": list("ab") * 6}), npartitions=3)
    columns = transform(fitted, table["path"])
    joined = table.join(columns).compute()
    assert list(columns.columns) == fitted.get_feature_names_out().tolist()
    np.testing.assert_array_equal(joined[list(columns.columns)].to_numpy(), from_bag)
    assert joined["label"].tolist() == list("ab") * 6


def test_the_threaded_scheduler_gives_the_same_features(monkeypatch):
    """Blocks wait for each other on one copy of the transformer (its hooks are its own): no mixed gradients."""
    import dask
    import dask.array as da

    from skfungi.dask import transform

    X = np.random.default_rng(2).integers(0, 256, size=(8, 20, 20, 3), dtype=np.uint8)
    fitted = FungiTransformer(TimmBackbone(tiny_vit()), losses=("kl", "simclr"), batch_size=2, random_state=0).fit(X)
    with dask.config.set(scheduler="threads", num_workers=4):
        found = transform(fitted, da.from_array(X, chunks=2)).compute()
    np.testing.assert_array_equal(found, np.concatenate([fitted.transform(X[i : i + 2]) for i in range(0, 8, 2)]))
    with pytest.raises(TypeError, match=r"takes a dask\.array, a dask\.bag or a dask\.dataframe Series"):
        transform(fitted, X)


def test_a_fitted_transformer_works_inside_dask_ml_parallel_post_fit():
    """dask-ml's ParallelPostFit maps transform over row blocks, keeping their shape: tabular rows fit it."""
    dask_ml_wrappers = pytest.importorskip("dask_ml.wrappers")
    import dask
    import dask.array as da

    from skfungi import TabularMLP

    X = np.random.default_rng(3).normal(size=(60, 5))
    wrapped = dask_ml_wrappers.ParallelPostFit(
        FungiTransformer(TabularMLP(hidden=(16,), embedding_dim=8), losses=("kl",), random_state=0)
    ).fit(X)
    fitted = wrapped.estimator_ if hasattr(wrapped, "estimator_") else wrapped.estimator
    with dask.config.set(scheduler="synchronous"):
        found = wrapped.transform(da.from_array(X, chunks=(20, 5))).compute()
    np.testing.assert_array_equal(found, np.concatenate([fitted.transform(X[i : i + 20]) for i in (0, 20, 40)]))
