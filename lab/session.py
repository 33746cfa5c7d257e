"""One user judging a word's results page by page: the panel's paging and the simulated user's, one code path.

A :class:`SearchSession` asks :meth:`lab.Collection.search` for the next page
of images not judged and not shown yet, with exploration on (a page is always
full of the most useful images to judge), and records the user's judgments.
The search panel pages through keyword results with it, and
:func:`lab.experiments.simulate_feedback` (hence ``lab evaluate``) drives it
as a simulated user, so what an evaluation measures is what the panel shows.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

__all__ = ["SearchSession"]


class SearchSession:
    """A user's pass through a word's results, one page at a time.

    Parameters
    ----------
    collection : Collection
    word : str
        The query word.
    page_size : int
        Images per page.
    user : str, optional
        Who judges (each user's votes count once per image).

    Attributes
    ----------
    pages_ : list of DataFrame
        The pages shown so far, in order (as :meth:`lab.Collection.search`
        returns them; rows passed to :meth:`skip` count as shown).

    Examples
    --------
    >>> session = SearchSession(col, "dandelion")                        # doctest: +SKIP
    >>> page = session.next_page()                                       # doctest: +SKIP
    >>> session.judge(page["id"], [path in mine for path in page["path"]])   # doctest: +SKIP
    >>> page = session.next_page()   # learned from those judgments      # doctest: +SKIP
    """

    def __init__(self, collection, word: str, page_size: int = 20, user: str | None = None):
        self.collection = collection
        self.word = word
        self.page_size = page_size
        self.user = user
        self.pages_: list[pd.DataFrame] = []

    @property
    def shown_(self) -> np.ndarray:
        """Rows shown so far in this session, in the collection as it is now.

        Row ids change when the collection is rewritten (images pruned, or
        rows of changed files compacted away by another process); the images
        shown are then found again by path.
        """
        if not self.pages_:
            return np.zeros(0, np.int64)
        rows = np.concatenate([page["id"].to_numpy(np.int64) for page in self.pages_])
        paths = np.concatenate([page["path"].to_numpy(object) for page in self.pages_])
        current = self.collection.images["path"]
        if (rows < len(current)).all() and (current.iloc[rows].to_numpy(object) == paths).all():
            return rows  # the usual case, read without touching the rest of the collection
        return np.flatnonzero(current.isin(paths).to_numpy())

    def next_page(self) -> pd.DataFrame:
        """The best ``page_size`` images for the word that this session has not shown.

        ``collection.search(word, k=page_size, explore=True, exclude=shown)``:
        images judged relevant earlier come first, images judged not relevant
        never show; while nothing relevant is known, evidence is interleaved
        with images to judge from groups unlike anything rejected; once the
        word is learned, the page goes on in the learned order.
        """
        self.collection.refresh()  # so that the rows shown are read against the collection this search sees
        page = self.collection.search(self.word, k=self.page_size, explore=True, exclude=self.shown_)
        self.pages_.append(page)
        return page

    def skip(self, rows: Iterable[int]) -> None:
        """Never show ``rows`` in this session (images the user has already seen elsewhere)."""
        rows = np.asarray(list(rows), np.int64)
        self.pages_.append(pd.DataFrame({"id": rows, "path": self.collection.images["path"].iloc[rows].to_numpy(object)}))

    def judge(self, rows: Iterable[int], relevant) -> None:
        """Record judgments of shown rows: ``relevant`` is one bool for all, or one per row."""
        rows = [int(row) for row in rows]
        flags = [bool(relevant)] * len(rows) if isinstance(relevant, (bool, np.bool_)) else [bool(flag) for flag in relevant]
        if len(flags) != len(rows):
            raise ValueError(f"got {len(rows)} rows but {len(flags)} relevance values")
        for flag in (True, False):  # one transaction for each answer (rows of a page are distinct images)
            chosen = [row for row, given in zip(rows, flags) if given is flag]
            if chosen:
                self.collection.judge(self.word, chosen, relevant=flag, user=self.user)
