"""The search core of one collection state, built from plain arrays.

:class:`SearchEngine` holds a collection's arrays (embeddings, class
probabilities, content hashes), its :class:`~lab.feedback.FeedbackStore` and a
``featurize`` callable for images from outside the collection; it knows
nothing of the collection's storage. :class:`lab.Collection` builds one per
collection state and drops it when the collection changes.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import numpy as np
import pandas as pd

from ..exploration import Explorer, ImageGroups
from ..feedback import FeedbackStore
from ..neighbors import METRICS
from ..vectors import LAYERS, N_CLASSES
from ..vocabulary import Resolution, load_vocabulary
from . import ranking
from .config import SearchConfig
from .frames import keyword_frame, similar_frame
from .keywords import KeywordScorer, resolve_word
from .similar import QueryImage, SimilarImages
from .space import ScoringSpace

__all__ = ["SearchEngine"]

Featurize = Callable[[object], tuple[np.ndarray, np.ndarray, str]]


class SearchEngine:
    """Keyword search, query by example and feedback over one collection's arrays.

    Parameters
    ----------
    embeddings : ndarray of shape (n_images, d)
        Transfer-layer vectors (may be a float16 memory map).
    class_probabilities : ndarray of shape (n_images, N_CLASSES)
    sha256 : ndarray of str, shape (n_images,)
        Content hash of each image; feedback is stored by hash.
    feedback : FeedbackStore
    featurize : callable, optional
        ``featurize(image) -> (embedding, class_probabilities, sha256)`` for an
        image from outside the collection (path, bytes, PIL image, pixels);
        see :func:`lab.extraction.featurize_image`. Without it only rows can
        be queried.
    config : SearchConfig, optional

    Every array is read lazily: a search reads the class matrix and scoring
    space (built on first use), query by example its own index.
    """

    def __init__(self, embeddings, class_probabilities, sha256, feedback: FeedbackStore, featurize: Featurize | None = None, config: SearchConfig | None = None):
        self.embeddings = embeddings
        self.class_probabilities = class_probabilities
        self.sha256 = np.asarray(sha256)
        self.feedback = feedback
        self.featurize = featurize
        self.config = config or SearchConfig()
        self.vocabulary = load_vocabulary()
        self.similar_images = SimilarImages({layer: getattr(self, array) for layer, array in LAYERS.items()})
        self._space: ScoringSpace | None = None
        self._keywords: KeywordScorer | None = None
        self._explorer: Explorer | None = None
        self._groups: ImageGroups | None = None

    def __len__(self) -> int:
        return len(self.sha256)

    # ------------------------------------------------------------ parts
    def scoring_space(self) -> ScoringSpace:
        """The fitted :class:`ScoringSpace` of the embeddings (built on first use)."""
        if self._space is None:
            c = self.config
            self._space = ScoringSpace(c.pca_threshold, c.pca_dimensions, c.pca_sample, c.block_size, c.background_sample).fit(self.embeddings)
        return self._space

    @property
    def keywords(self) -> KeywordScorer:
        """The :class:`KeywordScorer` of this collection (built on first use)."""
        if self._keywords is None:
            self._keywords = KeywordScorer(self.class_probabilities, self.sha256, self.feedback, self.scoring_space(), self.config)
        return self._keywords

    def resolve_term(self, word: str) -> Resolution:
        """What the vocabulary makes of a query word (:func:`lab.search.keywords.resolve_word`)."""
        return resolve_word(word, self.vocabulary)

    def explore(self, k: int, avoid: np.ndarray) -> np.ndarray:
        """``k`` varied, typical rows, none in ``avoid``, from groups unlike those rows (:class:`lab.exploration.Explorer`)."""
        vectors = self.scoring_space().vectors_
        if self._explorer is None:
            self._explorer = Explorer(pool_size=self.config.explore_pool_size, n_clusters=self.config.explore_n_clusters, n_broad=self.config.explore_n_broad, seed=self.config.explore_seed).fit(vectors, self.class_probabilities)
        return self._explorer.propose(k, avoid, vectors)

    def groups_of(self, rows: np.ndarray) -> np.ndarray:
        """The group of look-alikes of each of ``rows`` (:class:`lab.exploration.ImageGroups`, fitted on first use)."""
        vectors = self.scoring_space().vectors_
        if self._groups is None:
            self._groups = ImageGroups(self.config.group_size, self.config.explore_pool_size, seed=self.config.explore_seed).fit(vectors)
        return self._groups.predict(rows, vectors)

    # ------------------------------------------------------------ queries
    def query_image(self, image, source: str | None = None) -> QueryImage:
        """Features of a query: a row id (int), or an outside image handed to ``featurize``."""
        if isinstance(image, (int, np.integer)) and not isinstance(image, bool):
            row = int(image)
            return QueryImage(
                np.asarray(self.embeddings[row], np.float32),
                np.asarray(self.class_probabilities[row], np.float32),
                str(self.sha256[row]),
                row,
                source or f"row {row}",
            )
        if self.featurize is None:
            raise TypeError("this search engine has no featurize function: query by row id")
        embedding, probabilities, sha256 = self.featurize(image)
        return QueryImage(embedding, probabilities, sha256, None, source or _describe(image))

    def search(self, word: str, k: int = 20, offset: int = 0, exclude_judged: bool = False, explore: bool = False, exclude=None) -> pd.DataFrame:
        """Keyword search (see :meth:`lab.Collection.search`); rows without paths."""
        if k < 1 or offset < 0:
            raise ValueError("k must be at least 1 and offset at least 0")
        scores = self.keywords.score(self.resolve_term(word))
        if exclude is not None and len(exclude):
            # rows left out as if judged (a session's shown pages): the kept scores are not changed
            judged = scores.judged.copy()
            judged[np.asarray(exclude, np.int64)] = True
            scores, exclude_judged = dataclasses.replace(scores, judged=judged), True
        candidates = ranking.eligible_rows(scores, self.config.min_score, exclude_judged)
        explored = np.zeros(0, np.int64)
        if scores.model is not None:
            # a learned word's ranking goes on in the learned order once the evidence runs out
            page = ranking.filled_page(scores, k, self.config.min_score, offset, exclude_judged)
        elif explore and scores.n_images:
            page, explored = ranking.exploring_page(candidates, scores, k, offset, self.config, self.explore, self.groups_of)
        else:
            page = ranking.ranked_page(candidates, scores, k, offset)
        return keyword_frame(page, explored, scores, len(candidates), self.class_probabilities, self.vocabulary, self.config.min_score)

    def similar(self, query, k: int = 20, metric: str = "cosine", layer: str = "transfer") -> pd.DataFrame:
        """Query by example (see :meth:`lab.Collection.similar`).

        ``query`` is a :class:`QueryImage`, a row id, an outside image or a 1-D vector of the layer.
        """
        self.check_similar(k, metric, layer)
        if isinstance(query, np.ndarray) and query.ndim == 1:
            vector, row, source = query, None, "feature vector"
            expected = self.embeddings.shape[1] if layer == "transfer" else N_CLASSES
            if vector.shape[0] != expected:
                raise ValueError(f"a {layer}-layer feature vector must have {expected} values, got {vector.shape[0]}")
        else:
            found = query if isinstance(query, QueryImage) else self.query_image(query)
            vector, row, source = found.layer(layer), found.row, found.source
        rows, distances, algorithm = self.similar_images.kneighbors(vector, k, metric, layer, exclude=row)
        return similar_frame(rows, distances, metric, layer, source, algorithm)

    def check_similar(self, k: int, metric: str, layer: str) -> None:
        """Refuse a query by example that cannot be answered, before any image is read."""
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        if layer not in LAYERS:
            raise ValueError(f"layer must be 'transfer' (embeddings) or 'output' (class probabilities), got {layer!r}")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if len(self) == 0:
            raise ValueError("the collection is empty: add images first (col.add or `lab index`)")

    # ------------------------------------------------------------ feedback
    def judge(self, word: str, row: int, relevant: bool, user: str | None = None, path: str | None = None) -> int:
        """Record a judgment of the image in ``row`` for ``word``; returns its id."""
        term = self.resolve_term(word).term
        embedding = np.asarray(self.embeddings[row], np.float32)
        return self.feedback.add_judgment(term, str(self.sha256[row]), path, bool(relevant), user, embedding)

    def teach(self, word: str, image: QueryImage, user: str | None = None) -> int:
        """Record ``image`` as an example of ``word``; returns the example's id."""
        term = self.resolve_term(word).term
        return self.feedback.add_example(term, image.sha256, image.source, user, image.embedding)


def _describe(image) -> str:
    """How an outside query image is named in results."""
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return "uploaded image"
    if isinstance(image, np.ndarray):
        return "pixel array"
    return "image"
