"""Ranking and paging: keyword scores -> the rows of one page.

Steps, each a function on arrays so that a new rule (another kind of
exploration, handling of rejections) slots in as one more step:

1. :func:`eligible_rows`: images judged not relevant never show; images with
   no evidence at all (score under ``min_score`` and not judged relevant) are
   not listed, so ties never fall back to storage order;
2. :func:`ranked_page`: judged relevant first (more net votes first), then by
   score; the row id only breaks exact ties;
3. :func:`n_to_explore` and :func:`with_exploration`: while nothing is learned
   and the evidence does not fill the page, or a page's worth was rejected,
   make room for images to judge (:class:`lab.exploration.Explorer`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .keywords import KeywordScores

__all__ = ["eligible_rows", "n_to_explore", "ranked_page", "with_exploration"]


def eligible_rows(scores: KeywordScores, min_score: float, exclude_judged: bool = False) -> np.ndarray:
    """Rows that may be listed for the word, in row order.

    >>> import pandas as pd
    >>> from lab.vocabulary import Resolution
    >>> s = KeywordScores(Resolution("x", "imagenet"), np.array([0.5, 0.001, 0.2, 0.0]), None, None,
    ...                   np.array([0, 0, -1, 1]), np.array([False, False, True, True]), None, pd.DataFrame(), 0)
    >>> eligible_rows(s, 0.01).tolist(), eligible_rows(s, 0.01, exclude_judged=True).tolist()
    ([0, 3], [0])
    """
    net = scores.net
    eligible = (net >= 0) & ((scores.score >= min_score) | (net > 0))
    if exclude_judged:
        eligible &= ~scores.judged
    return np.flatnonzero(eligible)


def ranked_page(candidates: np.ndarray, scores: KeywordScores, k: int, offset: int = 0) -> np.ndarray:
    """Rows ``offset`` to ``offset + k`` of ``candidates`` ranked by votes then score; only that head is sorted.

    >>> import pandas as pd
    >>> from lab.vocabulary import Resolution
    >>> s = KeywordScores(Resolution("x", "imagenet"), np.array([0.5, 0.9, 0.2, 0.9]), None, None,
    ...                   np.array([0, 0, 1, 0]), np.zeros(4, bool), None, pd.DataFrame(), 0)
    >>> ranked_page(np.arange(4), s, k=3).tolist()
    [2, 1, 3]
    """
    # judged relevant first (more net votes first), then by score (<= 1); row id only breaks exact ties
    key = np.maximum(scores.net[candidates], 0) * 2.0 + scores.score[candidates]
    wanted = min(len(candidates), offset + k)
    if wanted < len(candidates):
        head = np.argpartition(-key, wanted - 1)[:wanted]
    else:
        head = np.arange(len(candidates))
    head = head[np.lexsort((candidates[head], -key[head]))]
    return candidates[head][offset : offset + k]


def n_to_explore(scores: KeywordScores, k: int, n_ranked: int) -> int:
    """How many of a page of ``k`` to give to exploring, with ``n_ranked`` rows of evidence on it.

    None once the word has a learned model; otherwise the places the evidence
    does not fill, and at least half the page once a page's worth was
    judged not relevant (the prior is then not this word).
    """
    if scores.model is not None or scores.n_images == 0:
        return 0
    n_explore = k - n_ranked  # nothing learned yet and too little evidence to fill the page
    if (scores.net < 0).sum() >= k:  # a page's worth rejected and nothing accepted
        n_explore = max(n_explore, k // 2)
    return max(n_explore, 0)


def with_exploration(page: np.ndarray, scores: KeywordScores, k: int, propose: Callable[[int, np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The page with its last places given to ``propose(n, avoid)``; returns (page, explored rows).

    ``avoid`` holds the judged rows and the rows kept on the page.
    """
    n_explore = n_to_explore(scores, k, len(page))
    if n_explore == 0:
        return page, np.zeros(0, np.int64)
    page = page[: k - n_explore]
    avoid = np.union1d(np.flatnonzero(scores.judged), page)
    explored = propose(n_explore, avoid)
    return np.concatenate([page, explored]), explored
