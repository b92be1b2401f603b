"""FUNGI features of Dask collections: a fitted transformer mapped over the blocks of a dask.array, the partitions
of a dask.bag or of a dask.dataframe column, lazily.

>>> from skfungi.dask import transform                                    # doctest: +SKIP
>>> features = transform(fitted, images)  # dask.array (N, H, W, 3) -> dask.array (N, n_features_out_)  # doctest: +SKIP
>>> features.to_zarr("features.zarr")                                     # doctest: +SKIP

The fitted transformer enters the task graph once, under a key of its own
(it is not hashed, which would pickle it once more): the client pickles it
once per computation, each worker holds one copy for all its blocks, and no
task carries the backbone's weights. Each block is transformed as a whole
(``fitted.transform(block)``), so its features are bit for bit those of
``fitted.transform`` on the same block in one process, at the same torch thread
count. Calls are serialised per copy of the transformer (its gradient hooks
are its own): with Dask's threaded scheduler, or workers of several threads,
blocks wait for each other; run worker processes of one thread each
(``LocalCluster(n_workers=N, threads_per_worker=1)``) for parallelism. Needs the
``[distributed]`` extra (or Dask alone for its local schedulers).
"""

from __future__ import annotations

import threading
import uuid
import weakref

import numpy as np

__all__ = ["transform"]

_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def transform(fitted, samples):
    """Lazy FUNGI features of a Dask collection of samples, computed block by block with ``fitted``.

    Parameters
    ----------
    fitted : FungiTransformer
        A fitted transformer (any fitted estimator with ``transform``,
        ``n_features_out_`` and ``get_feature_names_out`` will do).
    samples : dask.array.Array, dask.bag.Bag or dask.dataframe.Series
        The samples, in any form ``fitted.transform`` takes:

        - a **dask.array** with the samples along axis 0: images
          ``(N, H, W)`` or ``(N, H, W, C)``, tabular rows ``(N, F)``, or a 1-D
          array of texts. It is rechunked to whole samples (one chunk along
          every other axis) and transformed chunk by chunk;
        - a **dask.bag** of samples (image file paths, texts, arrays),
          transformed partition by partition; file paths are read on the
          workers, so only the paths travel;
        - a **dask.dataframe.Series**, a column of such samples, transformed
          partition by partition.

    Returns
    -------
    features : dask.array.Array or dask.dataframe.DataFrame
        float32 features of shape ``(N, fitted.n_features_out_)``, in the
        samples' order: a dask.array chunked as the samples for an array (for a
        bag, one chunk per partition, of sizes unknown until computed:
        ``features.compute_chunk_sizes()``), a dask DataFrame with one column
        per feature (``fitted.get_feature_names_out()``) and the Series' index
        for a Series.

    Examples
    --------
    >>> import dask.array as da                                          # doctest: +SKIP
    >>> images = da.from_zarr("images.zarr")  # (N, 224, 224, 3) uint8    # doctest: +SKIP
    >>> transform(fitted, images).compute()                             # doctest: +SKIP
    >>> import dask.bag as db                                            # doctest: +SKIP
    >>> paths = db.from_sequence(sorted(glob("photos/*.jpg")), partition_size=64)  # doctest: +SKIP
    >>> transform(fitted, paths).compute()                              # doctest: +SKIP
    >>> table = dd.read_parquet("reviews.parquet")                       # doctest: +SKIP
    >>> table.join(transform(fitted, table["text"])).to_parquet("features/")  # doctest: +SKIP
    """
    import dask
    import dask.array as da
    import dask.bag as db
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(fitted)
    width = int(fitted.n_features_out_)
    shared = dask.delayed(fitted, name=f"fitted-transformer-{uuid.uuid4().hex}", traverse=False)
    if isinstance(samples, da.Array):
        return _transform_array(samples, shared, width)
    if isinstance(samples, db.Bag):
        blocks = [
            da.from_delayed(dask.delayed(_transform_block)(partition, shared, width), (np.nan, width), np.float32)
            for partition in samples.to_delayed()
        ]
        return da.concatenate(blocks, axis=0)
    import dask.dataframe as dd

    if isinstance(samples, dd.Series):
        import pandas as pd

        names = [str(name) for name in fitted.get_feature_names_out()]
        meta = pd.DataFrame({name: pd.Series([], dtype=np.float32) for name in names})
        return samples.map_partitions(_transform_series, shared, width, names, meta=meta)
    raise TypeError(
        f"samples is a {type(samples).__name__}; skfungi.dask.transform takes a dask.array, a dask.bag or a "
        "dask.dataframe Series (a column). For a NumPy array or a list, call fitted.transform directly."
    )


def _transform_array(samples, shared, width: int):
    whole = {axis: -1 for axis in range(1, samples.ndim)}
    samples = samples.rechunk(whole) if whole else samples
    if samples.ndim == 1:  # texts: a new axis of features
        extra = {"new_axis": 1}
    else:  # images, rows: the sample's axes give way to one axis of features
        extra = {"drop_axis": list(range(2, samples.ndim))} if samples.ndim > 2 else {}
    return samples.map_blocks(
        _transform_block, shared, width, dtype=np.float32, chunks=(samples.chunks[0], (width,)), **extra
    )


def _transform_block(block, fitted, width: int) -> np.ndarray:
    """The features of one block (array chunk, bag partition), one call of ``fitted.transform`` at a time."""
    block = block if isinstance(block, np.ndarray) else list(block)
    if len(block) == 0:
        return np.zeros((0, width), np.float32)
    with _lock(fitted):
        return np.asarray(fitted.transform(block), dtype=np.float32)


def _transform_series(partition, fitted, width: int, names: list[str]):
    import pandas as pd

    features = _transform_block(partition.tolist(), fitted, width)
    return pd.DataFrame(features, index=partition.index, columns=names)


def _lock(fitted) -> threading.Lock:
    with _LOCKS_LOCK:
        lock = _LOCKS.get(fitted)
        if lock is None:
            lock = _LOCKS[fitted] = threading.Lock()
        return lock
