"""FungiTransformer: the scikit-learn face of FUNGI (glue only, no torch maths)."""

from __future__ import annotations

import os
import warnings
from typing import ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

from . import _defaults as defaults
from ._engine.bank_cache import bank_folder
from ._engine.extractor import FeatureExtractor, RunOptions
from ._utils.cloning import clone_sharing
from ._utils.device import PRECISIONS, module_on, resolve_device
from ._utils.seeding import base_seed, derive_seed
from ._utils.sklearn_compat import HasMethods, StrOptions, check_feature_names_in, fit_context
from ._utils.validation import int_range
from .backbones import MODALITIES, Backbone, declared_modality, resolve_backbone
from .backbones._base import check_module
from .backbones.layers import target_layer
from .losses import VIEW_PRESETS, make_loss
from .projection import PROJECTIONS, make_projection

__all__ = ["FungiTransformer"]


class FungiTransformer(TransformerMixin, BaseEstimator):
    """FUNGI features: a frozen embedding plus projected self-supervised gradients.

    For each sample, the transformer computes the backbone's embedding and,
    for every loss, the per-sample gradient of that loss with respect to one
    layer of the frozen backbone (summed over the loss's views), projects each
    gradient with one seeded random matrix, L2-normalises every block and
    concatenates ``[embedding, loss_1, ..., loss_n]``. Nothing is trained.

    Parameters
    ----------
    backbone : torch.nn.Module, str or backbone adapter
        The frozen encoder: a timm, open_clip or Hugging Face model, a spec
        string (``"timm:vit_base_patch16_224.dino"``, ``"open_clip:ViT-B-32/laion2b_s34b_b79k"``,
        ``"hf:/local/path"``), any other ``nn.Module`` (run by the generic
        adapter of its modality), or an adapter such as
        :class:`~skfungi.backbones.ImageBackbone` to give an embedding
        function, a preprocessing callable or an input size. It is resolved
        in ``fit``, never modified, and not copied by ``clone``.
    losses : "auto" or sequence of str or FungiLoss, default="auto"
        The feature blocks after the embedding, in output order: losses
        whose gradients are features, as names (``"kl"``, ``"dino"``,
        ``"simclr"``, with the paper's settings) or loss objects
        (:class:`~skfungi.losses.KLLoss`, ...); and, to see what the views
        alone give, ``"dino_views"``, ``"simclr_views"`` (or
        :class:`~skfungi.losses.ViewAverage` objects): the mean embedding of
        that loss's views, same views and seeds, no gradient (the cost of the
        views' forwards only). ``"auto"`` is the paper's set for the modality:
        ``("kl", "dino", "simclr")`` for images, ``("kl", "simclr")`` for
        text, audio and tabular rows (DINO needs image crops). An empty
        sequence gives the embedding alone.
    views : {"paper", "fast"}, default="paper"
        View settings of the losses given by name. ``"paper"``: the paper's
        (1 KL + 12 DINO + 49 SimCLR views, all at the input size).
        ``"fast"``: DINO's 10 local crops forwarded at 0.43 of the input size
        (96 px at 224) and SimCLR on a 4 x 4 grid of patches forwarded at
        their own half size, about 7x fewer pixels per image; ViTs
        interpolate their position embeddings, fixed-size backbones get every
        view at the input size. Loss objects keep their own settings, which
        is how each setting is grid-searched. Text, audio and tabular views
        are the same in every preset. See ``skfungi.losses.VIEW_PRESETS``
        and the user guide's "View presets".
    layer : str, default="auto"
        Dotted path of the target layer (``nn.Linear``, ``nn.Conv1d`` or ``nn.Conv2d``
        of any kernel, stride, padding, dilation and groups); only blocks
        that take a gradient need one (the embedding and ``"*_views"`` blocks
        need none);
        ``"auto"`` takes the adapter's default (``blocks.<last>.attn.proj``
        for timm ViTs).
    include_embedding : bool, default=True
        Put the L2-normalised embedding first in the output.
    projection : {"srht", "rademacher", "gaussian", "kronecker"} or projection object, \
default="srht"
        Random projection of the gradients, shared by all losses (see the
        user guide's "Projections"): SRHT, a fast transform whose rows are
        distributed as the paper's dense Rademacher rows, at a fraction of
        its cost; ``"rademacher"`` is the paper's dense matrix; Kronecker
        is the cheapest and least accurate.
    projection_dim : int or "auto", default="auto"
        Width of each gradient block; ``"auto"`` is the embedding width.
    batch_size : int, default=32
        Samples per batch, and the most views in one forward pass: a loss
        takes the views of as many whole samples as fit in
        ``max(batch_size, n_views)`` views and forwards them ``batch_size``
        at a time, with one backward for them all.
    device : "auto", str or torch.device, default="auto"
        Where the backbone runs. ``"auto"`` keeps a module that already lives
        on an accelerator there, else takes CUDA, then MPS, then the CPU. It
        is resolved in ``fit`` into ``device_``; a module that is elsewhere is
        copied to the device (the given module is never moved).
    precision : {"float32", "bfloat16", "float16"}, default="float32"
        Dtype of the backbone's forward passes (``torch.autocast``); losses,
        gradients and projections are computed in float32 or wider whatever
        this setting. float32 features do not depend on the batch size.
    num_workers : int, default=0
        Threads that decode inputs (files, PIL images, resizing) ahead of the
        batch being computed; 0 decodes in the calling thread.
    num_threads : "auto", int or None, default="auto"
        torch's intra-op threads during ``fit`` and ``transform`` (restored
        afterwards). ``"auto"`` runs small forwards (``batch_size`` views of
        under 1 GFLOP in all, such as a MobileNetV2 on 32-px images) at one
        thread, where a second thread gains little on idle cores and costs
        several times over when another job holds a core, and leaves larger
        ones at torch's count (``torch.set_num_threads``); an int (at most
        1024) sets the count; None leaves torch alone (user guide: "Threads").
    compile : bool or dict, default=False
        Run the backbone's forward through ``torch.compile`` (a dict gives its
        keyword arguments, e.g. ``{"mode": "max-autotune"}``). Only a shallow
        copy of the module is compiled. Compilation costs minutes on a CPU
        and pays off on long transforms; see the user guide.
    random_state : int, RandomState instance or None, default=None
        Seeds every random choice (heads, projection, views, negatives, and
        the weights of a backbone a spec string builds at random, such as
        ``"timm:<name>?pretrained=false"``). Pass an int for features that
        are identical across runs and processes.
    modality : {"auto", "image", "text", "audio", "tabular"}, default="auto"
        The kind of input. ``"auto"`` takes the adapter's modality (timm:
        image, Hugging Face: text, open_clip: image unless ``"text"`` is
        asked for); for any other module it is inferred from ``X`` in ``fit``
        (strings: text, 2-D arrays: tabular, lists of 1-D arrays: audio,
        otherwise images). Inputs of another kind at ``transform`` are an error.
    verbose : int, default=0
        When positive, show tqdm progress bars (on stderr) while ``fit``
        encodes SimCLR's negative bank and while transforming. Messages go
        to the ``skfungi`` logger; nothing is printed. The model libraries'
        own logs and progress bars while a spec string loads (transformers'
        "Loading weights", open_clip's root-logger errors, timm's INFO) are
        muted at 0 and shown when positive.
    on_non_finite : {"raise", "nan"}, default="raise"
        What to do with a sample whose features are NaN or infinite (its
        embedding, loss or gradient overflowed or is NaN; other samples are
        never affected): ``"raise"`` a ``ValueError`` naming the samples,
        or give them rows of ``"nan"`` with a ``RuntimeWarning`` naming them.
    memory : str, path, joblib.Memory or None, default=None
        A folder (or a ``joblib.Memory``: its ``location``) where ``fit``
        stores SimCLR's encoded negative bank and reads it back in a later
        fit with the same inputs, as ``Pipeline(memory=...)``; None stores
        nothing. A stored bank is used only if it equals a fresh encoding bit
        for bit: see the guarantees, "The negative-bank cache".

    Attributes
    ----------
    backbone_ : Backbone
        The resolved backbone adapter.
    modality_ : str
        The modality the transformer was fitted for.
    device_ : torch.device
        The device the backbone runs on.
    layer_ : str or None
        The target layer's dotted path; None when no block takes a gradient.
    blocks_ : list of FeatureBlock
        Fitted copies of every block after the embedding, in output order:
        the losses and the no-gradient blocks (:class:`~skfungi.losses.ViewAverage`).
    losses_ : list of FungiLoss
        The blocks of ``blocks_`` that are losses (random heads, negative banks).
    projection_ : projection object
        The fitted projection (its seed, never its matrix).
    extractor_ : FeatureExtractor
        The fitted feature pipeline (backbone, layer, blocks, projection).
    embedding_dim_ : int
        Width of the backbone's embedding.
    gradient_shape_ : tuple of int or None
        ``(d_out, d_in + bias)`` of the target layer's weight gradient (None without a target layer).
    seed_ : int
        Base seed derived from ``random_state``.
    n_features_out_ : int
        Number of output features.
    n_features_in_ : int
        Tabular rows: their number of features. Other modalities: 1 when
        ``fit`` was given one column as a 2-D table (a one-column DataFrame
        or an ``(n, 1)`` array); absent otherwise.
    feature_names_in_ : ndarray of str
        The DataFrame's column names (tabular), or its one column's name
        (other modalities); only when ``fit`` was given a DataFrame with
        string column names.

    See Also
    --------
    skfungi.losses.KLLoss, skfungi.losses.DINOLoss, skfungi.losses.SimCLRLoss
    skfungi.RademacherProjection, skfungi.GaussianProjection, skfungi.SRHTProjection,
    skfungi.KroneckerProjection
    skfungi.losses.ViewAverage : the no-gradient control of a loss's block

    Examples
    --------
    >>> import numpy as np, torch.nn as nn
    >>> from skfungi import FungiTransformer
    >>> from skfungi.backbones import ImageBackbone
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 1),
    ...                     nn.AdaptiveAvgPool2d(1), nn.Flatten())
    >>> images = np.random.default_rng(0).integers(0, 256, (6, 20, 20, 3), dtype=np.uint8)
    >>> fungi = FungiTransformer(ImageBackbone(net, input_size=16), losses=("kl", "simclr"),
    ...                          layer="2", random_state=0)
    >>> fungi.fit_transform(images).shape
    (6, 48)
    >>> fungi.get_feature_names_out()[[0, 16, 32]].tolist()
    ['embedding0', 'kl0', 'simclr0']
    """

    def __init__(
        self,
        backbone,
        *,
        losses=defaults.LOSSES,
        views=defaults.VIEWS,
        layer=defaults.LAYER,
        include_embedding=True,
        projection=defaults.PROJECTION,
        projection_dim="auto",
        batch_size=32,
        device="auto",
        precision=defaults.PRECISION,
        num_workers=0,
        num_threads=defaults.NUM_THREADS,
        compile=False,
        random_state=None,
        modality="auto",
        verbose=0,
        on_non_finite="raise",
        memory=None,
    ):
        self.backbone = backbone
        self.losses = losses
        self.views = views
        self.layer = layer
        self.include_embedding = include_embedding
        self.projection = projection
        self.projection_dim = projection_dim
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.num_workers = num_workers
        self.num_threads = num_threads
        self.compile = compile
        self.random_state = random_state
        self.modality = modality
        self.verbose = verbose
        self.on_non_finite = on_non_finite
        self.memory = memory

    _parameter_constraints: ClassVar[dict] = {
        "backbone": [torch.nn.Module, Backbone, str],
        "losses": [StrOptions({"auto"}), list, tuple],
        "views": [StrOptions(set(VIEW_PRESETS))],
        "layer": [str],
        "include_embedding": ["boolean"],
        "projection": [StrOptions(set(PROJECTIONS)), HasMethods(["fit", "reduce", "project"])],
        "projection_dim": [StrOptions({"auto"}), int_range(1)],
        "batch_size": [int_range(1)],
        "device": [str, torch.device],
        "precision": [StrOptions(set(PRECISIONS))],
        "num_workers": [int_range(0)],
        "num_threads": [StrOptions({"auto"}), int_range(1, defaults.MAX_THREADS), None],
        "compile": ["boolean", dict],
        "random_state": ["random_state"],
        "modality": [StrOptions({"auto", *MODALITIES})],
        "verbose": ["verbose"],
        "on_non_finite": [StrOptions({"raise", "nan"})],
        "memory": [None, str, os.PathLike, HasMethods(["cache"])],
    }

    def __sklearn_clone__(self):
        return clone_sharing(self, ("backbone",))  # the backbone (possibly a multi-GB module) is never copied

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        modality = declared_modality(self.backbone, self.modality)
        if modality in ("image", "text", "audio"):
            tags.input_tags.two_d_array = False
            tags.input_tags.three_d_array = modality == "image"
            tags.input_tags.string = modality == "text"
        return tags

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Resolve the backbone, draw heads and projection, build negative banks.

        Parameters
        ----------
        X : samples of the backbone's modality
            Images: ``(N, H, W, C)`` array, ``(N, C, H, W)`` tensor, or a list
            of PIL images, file paths or arrays (sizes may differ). Text: a
            list / array / Series of str. Audio: a list of 1-D waveforms or
            ``(waveform, sample_rate)`` pairs. Images, texts and audio may
            also come as one column of a table, as a ``ColumnTransformer``
            hands it: a pandas Series, a one-column DataFrame, or an object
            array of shape ``(n, 1)`` or ``(n,)``; missing values (None, NaN,
            empty paths) and a column mixing kinds of values are errors
            naming the rows (see ``docs/workflows.md``).
            Tabular: a 2-D array or DataFrame (one column is one feature).
        y : ignored

        Returns
        -------
        self : FungiTransformer
        """
        self._blocks()  # the block specifications are checked before anything is built
        seed = base_seed(self.random_state)
        resolved = resolve_backbone(
            self.backbone, self.modality, X, seed=derive_seed(seed, "backbone"), verbose=int(self.verbose)
        )
        blocks = self._blocks(resolved.modality)
        # only gradient blocks need a target layer: the embedding and view blocks serve any backbone
        layer = target_layer(resolved, self.layer) if any(block.needs_gradient for block in blocks) else None
        samples = resolved.as_samples(X, estimator=self, reset=True)
        backbone = resolved.fit(samples)  # a fitted copy when the adapter measures something (tabular)
        check_module(backbone.module)
        device = resolve_device(self.device, backbone.module)
        backbone = backbone.to(device)
        if self.compile:
            backbone = backbone.compiled(self._compile_options())
        projection = clone(make_projection(self.projection))
        extractor = FeatureExtractor(backbone, layer, blocks, projection, seed)
        extractor.fit(samples, self.projection_dim, self._run_options())
        self.extractor_ = extractor
        self.device_ = device
        self.modality_ = backbone.modality
        self.layer_ = layer
        self.seed_ = seed
        self.embedding_dim_ = extractor.embedding_dim
        self.gradient_shape_ = extractor.gradient_shape
        self.n_features_out_ = sum(extractor.block_widths(self.include_embedding))
        return self

    def transform(self, X):
        """FUNGI features of ``X``.

        Parameters
        ----------
        X : images
            Same forms as in :meth:`fit`.

        Returns
        -------
        features : ndarray of shape (n_samples, n_features_out_), float32
        """
        self._validate_params()
        check_is_fitted(self)
        samples = self.backbone_.as_samples(X, estimator=self, reset=False)
        return self.extractor_.transform(samples, self._run_options())

    def get_feature_names_out(self, input_features=None):
        """``embedding0, ..., kl0, ..., dino0, ..., simclr0, ...`` in output order."""
        check_is_fitted(self)
        check_feature_names_in(self, input_features, generate_names=False)
        names = []
        extractor = self.extractor_
        blocks = zip(
            extractor.block_names(self.include_embedding), extractor.block_widths(self.include_embedding), strict=True
        )
        for prefix, width in blocks:
            names.extend(f"{prefix}{i}" for i in range(width))
        return np.asarray(names, dtype=object)

    # -- pickling: fitted on an accelerator, loadable on a CPU-only machine ----

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: the default state is this object's own __dict__
        device = state.get("device_")
        if device is not None and device.type != "cpu":
            cpu, memo = torch.device("cpu"), {}
            state["extractor_"] = state["extractor_"].to(cpu, memo)
            state["backbone"] = _backbone_on(state["backbone"], cpu, memo)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if hasattr(self, "extractor_"):
            self._place_after_loading()
            self._restore_compiled()

    def _place_after_loading(self) -> None:
        device = self.device_
        if device.type == "cpu":
            return
        try:
            resolve_device(device)
        except ValueError:
            warnings.warn(
                f"this FungiTransformer was fitted on {device}, which this machine does not have; "
                "it runs on the CPU (device_ is now cpu).",
                UserWarning,
                stacklevel=2,
            )
            self.device_ = torch.device("cpu")
            return
        self.extractor_ = self.extractor_.to(device, {})

    def _restore_compiled(self) -> None:
        # a module pickles without its compiled call (nn.Module drops it): compile again after loading
        if self.compile and getattr(self.backbone_.module, "_compiled_call_impl", None) is None:
            self.extractor_.backbone = self.extractor_.backbone.compiled(self._compile_options())

    # the fitted parts live in the extractor; these attributes name them
    backbone_ = property(lambda self: self.extractor_.backbone)
    blocks_ = property(lambda self: self.extractor_.blocks)
    losses_ = property(lambda self: self.extractor_.losses)
    projection_ = property(lambda self: self.extractor_.projection)

    # -- internals ------------------------------------------------------------

    def _run_options(self) -> RunOptions:
        return RunOptions(
            include_embedding=bool(self.include_embedding),
            batch_size=int(self.batch_size),
            num_workers=int(self.num_workers),
            num_threads=self.num_threads,
            precision=self.precision,
            verbose=int(self.verbose),
            on_non_finite=self.on_non_finite,
            bank_cache=bank_folder(self.memory),
        )

    def _blocks(self, modality: str | None = None) -> list:
        """Fresh copies of the blocks ``losses`` asks for (``"auto"``: the paper's set for ``modality``)."""
        if isinstance(self.losses, str):  # "auto" (the constraints allow no other string)
            specs = defaults.paper_losses(modality)
        else:
            specs = self.losses
        blocks = [clone(make_loss(spec, self.views)) for spec in specs]
        names = [block.name for block in blocks]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"losses contains more than one {duplicates} block; each may appear once.")
        if not blocks and not self.include_embedding:
            raise ValueError("losses is empty and include_embedding=False: there would be no features.")
        return blocks

    def _compile_options(self) -> dict:
        return dict(self.compile) if isinstance(self.compile, dict) else {}


def _backbone_on(backbone, device: torch.device, memo: dict):
    """The ``backbone`` parameter with its module on ``device`` (strings unchanged)."""
    if isinstance(backbone, Backbone):
        return backbone.to(device, memo)
    if isinstance(backbone, torch.nn.Module):
        return module_on(backbone, device, memo)
    return backbone
