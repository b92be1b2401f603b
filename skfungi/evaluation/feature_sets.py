"""Feature sets: which blocks are concatenated, what each one's no-gradient control is, and their names.

A *block* is one part of FUNGI features, named as
:meth:`~skfungi.FungiTransformer.get_feature_names_out` names it:
``"embedding"``, a gradient block (``"kl"``, ``"dino"``, ``"simclr"``, or any
other loss's name) or a no-gradient view block (``"dino_views"``,
``"simclr_views"``: the mean embedding of that loss's views, no gradient). A
*feature set* is a tuple of block names, concatenated in that order.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

__all__ = [
    "EMBEDDING",
    "VIEWS_SUFFIX",
    "FeatureSet",
    "control_of",
    "default_feature_sets",
    "every_combination",
    "is_gradient_block",
    "is_gradient_set",
    "no_gradient_sets",
    "parse_feature_sets",
    "set_label",
]

EMBEDDING = "embedding"
VIEWS_SUFFIX = "_views"  # skfungi.losses.ViewAverage names its block <loss>_views
FeatureSet = tuple[str, ...]

_NAMES = {"embedding": "emb", "kl": "KL", "dino": "DINO", "simclr": "SimCLR"}
_ALIASES = {"emb": EMBEDDING, "embedding": EMBEDDING}


def is_gradient_block(name: str) -> bool:
    """Whether the block ``name`` holds gradients (not the embedding, not a ``*_views`` block)."""
    return name != EMBEDDING and not name.endswith(VIEWS_SUFFIX)


def is_gradient_set(feature_set: Sequence[str]) -> bool:
    """Whether at least one block of the set holds gradients."""
    return any(is_gradient_block(name) for name in feature_set)


def control_of(feature_set: Sequence[str], blocks: Sequence[str]) -> FeatureSet:
    """The matched no-gradient control of a feature set: each gradient block replaced by its view block.

    A gradient block without a ``<name>_views`` block among ``blocks`` (KL:
    its one view is the inference view) is replaced by the embedding;
    duplicates are dropped, order kept.

    Examples
    --------
    >>> control_of(("embedding", "kl", "dino"), ["embedding", "kl", "dino", "dino_views"])
    ('embedding', 'dino_views')
    """
    replaced = []
    for name in feature_set:
        if is_gradient_block(name):
            replaced.append(name + VIEWS_SUFFIX if name + VIEWS_SUFFIX in blocks else EMBEDDING)
        else:
            replaced.append(name)
    return tuple(dict.fromkeys(replaced))


def every_combination(blocks: Sequence[str]) -> list[FeatureSet]:
    """Every non-empty combination of ``blocks``, in block order, smallest first.

    Examples
    --------
    >>> every_combination(["embedding", "kl"])
    [('embedding',), ('kl',), ('embedding', 'kl')]
    """
    return [combo for size in range(1, len(blocks) + 1) for combo in itertools.combinations(blocks, size)]


def default_feature_sets(blocks: Sequence[str]) -> list[FeatureSet]:
    """The embedding, each gradient block alone, and the embedding with every gradient block.

    Examples
    --------
    >>> default_feature_sets(["embedding", "kl", "simclr", "simclr_views"])
    [('embedding',), ('kl',), ('simclr',), ('embedding', 'kl', 'simclr')]
    """
    gradients = [name for name in blocks if is_gradient_block(name)]
    sets = [(EMBEDDING,), *[(name,) for name in gradients]]
    return sets + ([(EMBEDDING, *gradients)] if gradients else [])


def no_gradient_sets(blocks: Sequence[str]) -> list[FeatureSet]:
    """Every combination of the blocks without gradients: the candidates of the best no-gradient alternative."""
    return every_combination([name for name in blocks if not is_gradient_block(name)])


def parse_feature_sets(spec, blocks: Sequence[str]) -> list[FeatureSet]:
    """The feature sets that ``spec`` names, checked against the extracted ``blocks``.

    Parameters
    ----------
    spec : "default", "all", str or sequence of sequences of str
        ``"default"``: :func:`default_feature_sets`; ``"all"``: every
        combination of the embedding and the gradient blocks; a string such
        as ``"emb+kl,emb+kl+simclr"`` (sets separated by commas, blocks by
        ``+``; ``emb`` stands for ``embedding``); or a list of tuples of block names.
    blocks : sequence of str
        The blocks that will be extracted.

    Returns
    -------
    sets : list of tuple of str
        Without duplicates, in the order given.

    Examples
    --------
    >>> parse_feature_sets("emb+kl, simclr", ["embedding", "kl", "simclr", "simclr_views"])
    [('embedding', 'kl'), ('simclr',)]
    """
    if isinstance(spec, str) and spec == "default":
        return default_feature_sets(blocks)
    if isinstance(spec, str) and spec == "all":
        return every_combination([name for name in blocks if name == EMBEDDING or is_gradient_block(name)])
    if isinstance(spec, str):
        spec = [part.split("+") for part in spec.split(",")]
    sets = []
    for feature_set in spec:
        if isinstance(feature_set, str):
            feature_set = (feature_set,)
        names = tuple(_ALIASES.get(name.strip().lower(), name.strip().lower()) for name in feature_set)
        unknown = [name for name in names if name not in blocks]
        if not names or not all(names) or unknown:
            raise ValueError(
                f"feature set {'+'.join(feature_set)!r} names blocks that are not extracted ({unknown or 'empty'}); "
                f"the blocks are {', '.join(blocks)} ('emb' for the embedding)."
            )
        if len(set(names)) != len(names):
            raise ValueError(f"feature set {'+'.join(names)!r} names a block twice.")
        sets.append(names)
    if not sets:
        raise ValueError("no feature set to score.")
    return list(dict.fromkeys(sets))


def block_label(name: str) -> str:
    """``emb``, ``KL``, ``DINO views``, ...: a block's short name in tables."""
    if name.endswith(VIEWS_SUFFIX):
        return f"{block_label(name.removesuffix(VIEWS_SUFFIX))} views"
    return _NAMES.get(name, name)


def set_label(feature_set: Sequence[str]) -> str:
    """A feature set's name in tables: ``emb + KL + DINO views``; a block alone keeps its full name.

    Examples
    --------
    >>> set_label(("embedding", "kl", "simclr_views"))
    'emb + KL + SimCLR views'
    >>> set_label(("embedding",)), set_label(("kl",))
    ('embedding', 'KL grads')
    """
    if len(feature_set) == 1:
        (name,) = feature_set
        if name == EMBEDDING:
            return EMBEDDING
        return block_label(name) + ("" if name.endswith(VIEWS_SUFFIX) else " grads")
    return " + ".join(block_label(name) for name in feature_set)
