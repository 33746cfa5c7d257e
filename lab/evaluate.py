"""Retrieval metrics on ranked relevance lists.

Every function takes ``relevance``: booleans (or 0/1) for the ranked results,
best first, and where needed ``n_relevant``, the number of relevant items in
the whole collection (results beyond the list count as misses).

>>> precision_at_k([1, 0, 1, 1], 4)
0.75
>>> round(average_precision([1, 0, 1], n_relevant=2), 4)
0.8333
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["average_precision", "precision_at_k"]


def _as_bool(relevance) -> np.ndarray:
    return np.asarray(list(relevance) if not isinstance(relevance, np.ndarray) else relevance).astype(bool)


def precision_at_k(relevance: Sequence, k: int) -> float:
    """Fraction of the first ``k`` results that are relevant; a list shorter than ``k`` counts misses."""
    if k < 1:
        raise ValueError("k must be at least 1")
    return float(_as_bool(relevance)[:k].sum()) / k


def average_precision(relevance: Sequence, n_relevant: int | None = None) -> float:
    """Mean of precision@i over the ranks i of relevant results, divided by ``n_relevant``.

    Equals scikit-learn's ``average_precision_score`` when the list ranks the
    whole collection.
    """
    hits = _as_bool(relevance)
    n_relevant = int(hits.sum()) if n_relevant is None else int(n_relevant)
    if n_relevant == 0:
        return 0.0
    ranks = np.flatnonzero(hits) + 1
    return float((np.arange(1, len(ranks) + 1) / ranks).sum() / n_relevant)
