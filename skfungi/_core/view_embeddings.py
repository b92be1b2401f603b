"""Mean embedding of the views a fitted loss uses: the no-gradient control of FUNGI features.

A gradient block summarises how a loss reacts to a sample's views. Part of any
accuracy gain may come from the views themselves (test-time augmentation), not
from the gradient. The fair control is the embedding concatenated with the
mean embedding of the *same* views: :func:`mean_view_embeddings` computes it
with the engine's own view code and seeds, so the views are exactly those the
loss's gradient was computed on.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.validation import check_is_fitted

from .extractor import KeyedSample
from .freeze import frozen_eval

__all__ = ["mean_view_embeddings"]


def mean_view_embeddings(transformer, X, loss: str, *, normalize: bool = True) -> np.ndarray:
    """Mean over a loss's views of each sample's embeddings, without any gradient.

    Parameters
    ----------
    transformer : FungiTransformer
        A fitted transformer whose ``losses_`` contains ``loss``.
    X : samples
        Inputs in any form ``transformer.transform`` accepts.
    loss : str
        Name of the loss whose views are embedded (``"dino"``, ``"simclr"``,
        ``"kl"``: its one view is the inference view).
    normalize : bool, default=True
        L2-normalise each mean (as every block of FUNGI features is).

    Returns
    -------
    embeddings : ndarray of shape (n_samples, embedding_dim_), float32
        Row ``i``: the mean of the backbone's embeddings of the views that
        ``transformer.transform`` builds for sample ``i`` for ``loss``
        (same seeds, hence the same crops, patches, word deletions or noise).

    Raises
    ------
    ValueError
        If the transformer has no loss named ``loss``.
    """
    check_is_fitted(transformer)
    by_name = {fitted.name: fitted for fitted in transformer.losses_}
    if loss not in by_name:
        raise ValueError(f"the transformer has no {loss!r} loss; its losses are {list(by_name)}.")
    fitted_loss = by_name[loss]
    extractor = transformer.extractor_
    options = transformer._run_options()
    backbone = transformer.backbone_
    samples = backbone.as_samples(X, estimator=transformer, reset=False)
    out = np.empty((len(samples), transformer.embedding_dim_), dtype=np.float32)
    with frozen_eval(backbone.module):
        for start in range(0, len(samples), options.batch_size):
            stop = min(start + options.batch_size, len(samples))
            batch = [KeyedSample.of(backbone, samples, index) for index in range(start, stop)]
            means = extractor.encode(fitted_loss, batch, options, stage=None).mean(dim=1)
            if normalize:
                means = F.normalize(means, dim=1)
            out[start:stop] = means.to(device="cpu", dtype=torch.float32).numpy()
    return out
