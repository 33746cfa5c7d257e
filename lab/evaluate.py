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

from typing import Iterable, Sequence

import numpy as np

__all__ = ["average_precision", "mean_average_precision", "precision_at_k", "recall_at_k"]


def _as_bool(relevance) -> np.ndarray:
    return np.asarray(list(relevance) if not isinstance(relevance, np.ndarray) else relevance).astype(bool)


def precision_at_k(relevance: Sequence, k: int) -> float:
    """Fraction of the first ``k`` results that are relevant; a list shorter than ``k`` counts misses."""
    if k < 1:
        raise ValueError("k must be at least 1")
    return float(_as_bool(relevance)[:k].sum()) / k


def recall_at_k(relevance: Sequence, k: int, n_relevant: int) -> float:
    """Fraction of all ``n_relevant`` relevant items found in the first ``k`` results."""
    if n_relevant < 1:
        raise ValueError("n_relevant must be at least 1")
    return float(_as_bool(relevance)[:k].sum()) / n_relevant


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


def mean_average_precision(relevances: Iterable[Sequence], n_relevants: Iterable[int] | None = None) -> float:
    """Mean of :func:`average_precision` over queries."""
    relevances = list(relevances)
    counts = [None] * len(relevances) if n_relevants is None else list(n_relevants)
    return float(np.mean([average_precision(r, n) for r, n in zip(relevances, counts)])) if relevances else 0.0
