"""Ranking and paging: keyword scores -> the rows of one page.

Steps, each a function on arrays so that a new rule (another kind of
exploration, handling of rejections) slots in as one more step:

1. :func:`eligible_rows`: images judged not relevant never show; images with
   no evidence at all (score under ``min_score`` and not judged relevant) are
   not listed, so ties never fall back to storage order;
2. :func:`ranked_page`: judged relevant first (more net votes first), then by
   score; the row id only breaks exact ties;
3. with ``explore`` (a user judging pages), every page is full:
   :func:`exploring_page` interleaves the evidence of a word with no relevant
   example yet with images to judge (:class:`lab.exploration.Explorer`), a
   share :func:`prior_share` that falls with each rejection; evidence the
   configuration doubts (a word ImageNet does not cover) is half
   :func:`spread` over groups of look-alike images.
4. :func:`filled_page`: a learned word's ranking (explore or not) goes on in
   the learned order once the evidence runs out, so a taught word lists its
   images even where the whole collection looks alike.

Every page is a slice of one ranking that depends on the judgments only: the
first 20 rows of a 40-row page are the 20-row page.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .config import SearchConfig
from .keywords import KeywordScores

__all__ = ["eligible_rows", "exploring_page", "filled_page", "interleave", "prior_share", "ranked_page", "spread"]


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
    return _head(candidates, key, k, offset)


def _head(candidates: np.ndarray, key: np.ndarray, k: int, offset: int) -> np.ndarray:
    """Rows ``offset`` to ``offset + k`` of ``candidates`` by ``key`` (highest first, then row id); only that head is sorted."""
    wanted = min(len(candidates), offset + k)
    if wanted < len(candidates):
        # the head holds every key above the boundary value and, of the exact ties at it, the lowest rows,
        # so a longer page always starts with the shorter one
        boundary = np.partition(-key, wanted - 1)[wanted - 1]
        above = np.flatnonzero(-key < boundary)
        tied = np.flatnonzero(-key == boundary)
        head = np.concatenate([above, tied[np.argsort(candidates[tied], kind="stable")][: wanted - len(above)]])
    else:
        head = np.arange(len(candidates))
    head = head[np.lexsort((candidates[head], -key[head]))]
    return candidates[head][offset : offset + k]


def prior_share(scores: KeywordScores, config: SearchConfig) -> float:
    """Share of page positions for the vocabulary's evidence while nothing relevant is known; the rest explores.

    ``trust / (trust + doubt + n_rejected)`` with the word kind's
    ``config.prior_trust`` and ``config.prior_doubt``: it depends on the
    judgments only, never on the page size.

    >>> import pandas as pd
    >>> from lab.vocabulary import Resolution
    >>> s = KeywordScores(Resolution("x", "related"), np.zeros(30), None, None, np.r_[-np.ones(20, int), np.zeros(10, int)],
    ...                   np.r_[np.ones(20, bool), np.zeros(10, bool)], None, pd.DataFrame(), 0)
    >>> round(prior_share(s, SearchConfig()), 3)
    0.125
    """
    kind = scores.resolution.kind
    trust = config.prior_trust[kind]
    if trust <= 0:
        return 0.0
    return trust / (trust + config.prior_doubt[kind] + int((scores.net < 0).sum()))


def interleave(ranked: np.ndarray, proposals: np.ndarray, share: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` rows of ``ranked`` and ``proposals`` merged, a ``share`` of the positions from ``ranked``.

    Position ``i`` takes the next row of ``ranked`` when ``ceil((i + 1) * share)``
    steps up (so the first position is the best evidence whenever ``share > 0``),
    otherwise the next proposal; a list that runs out leaves its places to the
    other, and a row already placed is skipped. The merged order does not
    depend on ``n``: a longer page starts with the shorter one.

    Returns the rows and a mask of those that came from ``proposals``.

    >>> rows, explored = interleave(np.array([1, 2, 3, 4]), np.array([9, 2, 8]), 0.5, 6)
    >>> rows.tolist(), explored.tolist()
    ([1, 9, 2, 8, 3, 4], [False, True, False, True, False, False])
    """
    rows: list[int] = []
    from_proposals: list[bool] = []
    seen: set[int] = set()
    i_ranked = i_proposed = 0
    while len(rows) < n and (i_ranked < len(ranked) or i_proposed < len(proposals)):
        position = len(rows)
        wants_ranked = np.ceil((position + 1) * share - 1e-9) > np.ceil(position * share - 1e-9)
        take_ranked = (wants_ranked and i_ranked < len(ranked)) or i_proposed >= len(proposals)
        if take_ranked:
            row, i_ranked = int(ranked[i_ranked]), i_ranked + 1
        else:
            row, i_proposed = int(proposals[i_proposed]), i_proposed + 1
        if row in seen:
            continue
        seen.add(row)
        rows.append(row)
        from_proposals.append(not take_ranked)
    return np.asarray(rows, np.int64), np.asarray(from_proposals, bool)


def spread(ranked: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``ranked`` reordered so that every group gives its best row before any group gives its second, and so on.

    ``groups`` holds the group of each row of ``ranked``; within a round the
    rows keep their order in ``ranked``, so the result never depends on how
    many rows are wanted from it.

    >>> spread(np.array([5, 6, 7, 8, 9]), np.array([0, 0, 0, 1, 2])).tolist()
    [5, 8, 9, 6, 7]
    """
    groups = np.asarray(groups, np.int64)
    by_group = np.argsort(groups, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(groups[by_group])) + 1]
    within = np.empty(len(ranked), np.int64)  # how many better rows of the same group come before each row
    within[by_group] = np.arange(len(ranked)) - np.repeat(starts, np.diff(np.r_[starts, len(ranked)]))
    return ranked[np.lexsort((np.arange(len(ranked)), within))]


def filled_page(scores: KeywordScores, k: int, min_score: float, offset: int = 0, exclude_judged: bool = False) -> np.ndarray:
    """A page of a learned word that goes on in the learned order once the evidence runs out.

    Rows with evidence come first, as :func:`ranked_page` orders them; then
    every other row not judged not relevant, by the learned model's raw
    decision value, so a user judging pages always gets a full page of the
    model's best remaining guesses.
    """
    net = scores.net
    allowed = net >= 0
    if exclude_judged:
        allowed &= ~scores.judged
    has_evidence = (scores.score >= min_score) | (net > 0)
    evidence = np.flatnonzero(allowed & has_evidence)
    wanted = offset + k
    # every row with evidence ranks above every row without (ranked_page's keys are >= 0)
    head = _head(evidence, np.maximum(net[evidence], 0) * 2.0 + scores.score[evidence], wanted, 0)
    if len(head) < wanted:
        rest = np.flatnonzero(allowed & ~has_evidence)
        head = np.concatenate([head, _head(rest, scores.decision[rest], wanted - len(head), 0)])
    return head[offset:wanted]


def exploring_page(
    candidates: np.ndarray,
    scores: KeywordScores,
    k: int,
    offset: int,
    config: SearchConfig,
    propose: Callable[[int, np.ndarray], np.ndarray],
    groups_of: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A page of a word with no relevant example yet: its evidence interleaved with exploration.

    ``propose(n, avoid)`` gives ``n`` rows to explore, none in ``avoid`` (the
    judged rows), in an order that does not depend on ``n``; a share
    :func:`prior_share` of the positions shows the evidence. Where the word
    kind's ``config.prior_doubt`` is above 0 and ``groups_of(rows)`` gives
    each row's group of look-alikes, a ``config.spread_share`` of the
    evidence's positions goes to the best ``config.spread_pool`` rows
    :func:`spread` over those groups: a prior that names the wrong look-alike
    class then shows many kinds of image, not one. Returns (page, explored rows).
    """
    wanted = offset + k
    spreading = groups_of is not None and config.spread_share > 0 and config.prior_doubt[scores.resolution.kind] > 0
    ranked = ranked_page(candidates, scores, max(wanted, config.spread_pool) if spreading else wanted)
    if spreading:
        head = ranked[: config.spread_pool]  # a fixed head, so that the order never depends on the page size
        mixed, _ = interleave(head, spread(head, groups_of(head)), 1.0 - config.spread_share, len(head))
        ranked = np.concatenate([mixed, ranked[len(head) :]])
    proposals = propose(wanted, np.flatnonzero(scores.judged))
    rows, explored = interleave(ranked, proposals, prior_share(scores, config), wanted)
    page, explored = rows[offset:wanted], explored[offset:wanted]
    return page, page[explored]
