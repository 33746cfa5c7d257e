"""Keyword scoring: how much each image shows a word, from the vocabulary's prior and from feedback.

A word's score blends two pieces of evidence:

* the **prior**: the probability mass an image puts on the ImageNet classes
  the vocabulary maps the word to (:func:`prior_scores`);
* the **learned score**: a per-word linear model fitted to the judgments and
  taught examples (:class:`lab.term_model.TermClassifier`), its cosines
  expanded by the nearest images and calibrated against the collection
  (:func:`learned_scores`, :func:`calibrate`).

:class:`KeywordScorer` puts them together into :class:`KeywordScores`, which
ranking (:mod:`lab.search.ranking`) turns into pages. Everything here works
on plain arrays.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..feedback import FeedbackStore
from ..term_model import TermClassifier
from ..validation import check_word, has_letters
from ..vectors import read_rows, unit_rows
from ..vocabulary import Resolution, Vocabulary, normalize_term
from .config import SearchConfig
from .space import ScoringSpace

__all__ = ["KeywordScorer", "KeywordScores", "calibrate", "doubted_classes", "learned_decision", "learned_scores", "prior_scores", "resolve_word"]

MAD_TO_SIGMA = 1.4826  # median absolute deviation -> standard deviation, for normally distributed values


def resolve_word(word: str, vocabulary: Vocabulary) -> Resolution:
    """What the vocabulary knows about a query word (in any script); a clear error for one with no letters.

    The word is checked by :func:`lab.validation.check_word`, the same check the
    :class:`lab.Collection` methods make where a query enters.
    """
    term = normalize_term(check_word(word))
    if not has_letters(term):  # what normalising leaves must still be a word
        raise ValueError(f"the query {word!r} has no letters: type a word such as 'dog' or 'beach'")
    return vocabulary.resolve(term)


def prior_scores(classes, resolution: Resolution) -> np.ndarray:
    """Probability mass each image puts on the word's ImageNet classes (weighted as the vocabulary says).

    ``classes`` is the sparse column-major matrix of :func:`lab.search.space.class_matrix`.
    """
    n = classes.shape[0]
    if len(resolution.classes) == 0 or n == 0:
        return np.zeros(n, np.float32)
    spans = [np.arange(classes.indptr[c], classes.indptr[c + 1]) for c in resolution.classes]
    entries = np.concatenate(spans) if spans else np.zeros(0, np.int64)
    weights = np.repeat(resolution.weights, [len(span) for span in spans])
    return np.bincount(classes.indices[entries], weights=classes.data[entries] * weights, minlength=n).astype(np.float32)


def calibrate(decision: np.ndarray, config: SearchConfig) -> np.ndarray:
    """Cosines -> scores in (0, 1) by robust z-score against the collection.

    An image scores 0.5 at ``config.calibration_z`` robust deviations above
    the collection's median, and 0 under ``config.evidence_z`` deviations
    (no evidence). Median and MAD come from a fixed sample above
    ``config.calibration_sample`` images (the same answer, far cheaper).

    >>> scores = calibrate(np.r_[np.linspace(0, 1, 99), 10.0], SearchConfig())
    >>> bool(scores[-1] > 0.99), bool((scores[:50] == 0).all())
    (True, True)
    """
    limit = config.calibration_sample
    sample = decision if len(decision) <= limit else decision[np.random.default_rng(0).integers(0, len(decision), limit)]
    center = np.median(sample)
    spread = MAD_TO_SIGMA * np.median(np.abs(sample - center)) + 1e-6
    z = (decision - center) / spread
    scores = 1.0 / (1.0 + np.exp(-np.clip(z - config.calibration_z, -50.0, 50.0)))
    scores[z < config.evidence_z] = 0.0
    return scores


def learned_decision(space: ScoringSpace, model: TermClassifier, config: SearchConfig, exclude: np.ndarray | None = None) -> np.ndarray:
    """The learned model's raw decision values (cosines with its expanded direction) over the collection.

    Query expansion: while the model has fewer than ``config.expansion_until``
    relevant examples, the ``config.n_expansion`` images closest to the
    learned direction (not in ``exclude``, the rows judged not relevant) are
    averaged into it (weight ``config.expansion_weight``); see
    ``results/evaluation_caltech101.md`` for what learning reaches with it.
    """
    vectors = space.vectors_
    direction = space.project(model.coef_)
    decision = vectors @ direction
    n_expansion = config.n_expansion
    if n_expansion and model.n_positive_ < config.expansion_until and len(decision) > n_expansion:
        ranked = decision.copy()
        if exclude is not None:
            ranked[exclude] = -np.inf
        top = _top_rows(ranked, n_expansion)
        decision = vectors @ (direction + config.expansion_weight * vectors[top].mean(axis=0))
    return decision


def _top_rows(values: np.ndarray, k: int) -> np.ndarray:
    """Rows of the ``k`` largest values, ties to the lowest rows (a partition of the values, several times faster than argpartition).

    >>> _top_rows(np.array([0.1, 0.9, 0.5, 0.9]), 2).tolist()
    [1, 3]
    """
    kth = np.partition(values, len(values) - k)[len(values) - k]
    top = np.flatnonzero(values >= kth)
    return top[np.argsort(-values[top], kind="stable")[:k]]


def learned_scores(space: ScoringSpace, model: TermClassifier, config: SearchConfig, exclude: np.ndarray | None = None) -> np.ndarray:
    """The learned model's scores in (0, 1): :func:`learned_decision` calibrated by :func:`calibrate`.

    With a handful of examples, cosines of relevant images sit well above the
    bulk of the collection but far from 1; what matters is how far an image
    stands out.
    """
    return calibrate(learned_decision(space, model, config, exclude), config)


def doubted_classes(resolution: Resolution, class_probabilities, rejected: np.ndarray, trust: float) -> Resolution:
    """The word's classes reweighted by rejections: each rejected image is evidence against the classes that put it forward.

    A class's weight is multiplied by ``trust / (trust + m)``, ``m`` being the
    probability mass the rejected images put on it, so a page of rejected
    daisies for "dandelion" turns the prior away from the daisy class and
    towards the word's other classes.

    >>> r = Resolution("x", "related", np.array([0, 1]))
    >>> [round(float(w), 3) for w in doubted_classes(r, np.array([[0.9, 0.0], [0.1, 0.5]]), np.array([0]), 1.0).weights]
    [0.526, 1.0]
    """
    if len(resolution.classes) == 0 or len(rejected) == 0:
        return resolution
    mass = read_rows(class_probabilities, rejected)[:, resolution.classes].astype(np.float64).sum(axis=0)
    trust = max(float(trust), 1.0)
    return dataclasses.replace(resolution, weights=(resolution.weights * trust / (trust + mass)).astype(np.float32))


def similarity_to(space: ScoringSpace, examples: np.ndarray, config: SearchConfig) -> np.ndarray:
    """How much each image stands out as like its closest of ``examples`` (the latest ``config.example_limit``), in (0, 1)."""
    directions = space.project(unit_rows(examples[-config.example_limit :]))
    return calibrate((space.vectors_ @ directions.T).max(axis=1), config)


@dataclass
class KeywordScores:
    """Everything known about one word over the collection: scores, votes and the model behind them.

    ``score``, ``prior`` and ``learned`` (None without a model) have one
    value per image; ``decision`` holds the learned model's raw values, which
    keep ordering images after their calibrated score has dropped to 0 (no
    evidence); ``net`` holds each image's net relevance votes and ``judged``
    whether anyone judged it (images judged under any path count).
    """

    resolution: Resolution
    score: np.ndarray
    prior: np.ndarray
    learned: np.ndarray | None
    net: np.ndarray
    judged: np.ndarray
    model: TermClassifier | None
    votes: pd.DataFrame
    n_examples: int
    decision: np.ndarray | None = None

    @property
    def n_images(self) -> int:
        return len(self.score)


class KeywordScorer:
    """Scores words over one collection's arrays, learning each word from its feedback.

    Parameters
    ----------
    class_probabilities : ndarray of shape (n_images, N_CLASSES)
    sha256 : ndarray of str, shape (n_images,)
        Content hash of each image: feedback is stored by hash.
    feedback : FeedbackStore
    space : ScoringSpace
        Fitted on the same collection's embeddings.
    config : SearchConfig
    """

    def __init__(self, class_probabilities, sha256, feedback: FeedbackStore, space: ScoringSpace, config: SearchConfig):
        self.class_probabilities = class_probabilities
        self.sha256 = sha256
        self.feedback = feedback
        self.space = space
        self.config = config
        self._classes = None
        self._top = None
        self._sha_index: tuple[np.ndarray, np.ndarray] | None = None  # row order of the sorted hashes, and the hashes
        self._models: dict = {}
        self._last: tuple | None = None

    def __len__(self) -> int:
        return len(self.sha256)

    def class_matrix(self):
        """The sparse class matrix (:func:`lab.search.space.class_matrix`), built on first use."""
        if self._classes is None:
            from .space import class_matrix_and_top

            self._classes, self._top = class_matrix_and_top(self.class_probabilities, self.config.prior_floor, self.config.block_size)
        return self._classes

    def top_probability(self) -> np.ndarray:
        """Each image's highest class probability, read with the class matrix (:func:`lab.search.space.class_matrix_and_top`)."""
        if self._top is None:
            self.class_matrix()
        return self._top

    def prior_scores(self, resolution: Resolution) -> np.ndarray:
        """The word's prior (:func:`prior_scores`); for a word ImageNet does not cover, discounted where the network is sure of another class.

        See :attr:`SearchConfig.confident_discount <lab.search.SearchConfig>`.
        """
        prior = prior_scores(self.class_matrix(), resolution)
        power = self.config.confident_discount
        if power > 0 and resolution.kind != "imagenet" and len(resolution.classes):
            prior *= (1.0 - np.clip(self.top_probability(), 0.0, 1.0)) ** np.float32(power)
        return prior

    def rows_of_sha(self, shas) -> list[np.ndarray]:
        """The rows holding each of ``shas`` (one image may sit under several paths; none when absent).

        Looked up in the hashes sorted once (65 bytes a row, where a dict of
        them took about 200 at a million images).

        >>> scorer = KeywordScorer(None, np.array(["b", "a", "b"], object), None, None, None)
        >>> [rows.tolist() for rows in scorer.rows_of_sha(["b", "c"])]
        [[0, 2], []]
        """
        if self._sha_index is None:
            hashes = np.asarray(self.sha256, dtype="S64")
            order = np.argsort(hashes, kind="stable")
            self._sha_index = (order, hashes[order])  # one assignment: another thread sees both or neither
        order, sorted_sha = self._sha_index
        keys = np.asarray(list(shas), dtype="S64")
        left = np.searchsorted(sorted_sha, keys, side="left")
        right = np.searchsorted(sorted_sha, keys, side="right")
        return [order[a:b] for a, b in zip(left, right)]

    def votes_by_row(self, votes: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Net votes per row, and whether anyone judged the row; images judged under any path count."""
        net = np.zeros(len(self), np.int64)
        judged = np.zeros(len(self), bool)
        for rows, vote in zip(self.rows_of_sha(votes.index), votes["net"].to_numpy()):
            net[rows] = vote
            judged[rows] = True
        return net, judged

    def term_model(self, term: str) -> tuple[TermClassifier | None, pd.DataFrame, int]:
        """The learned classifier of a term (None without positives), its votes, and its number of examples."""
        key = (term, self.feedback.version(term), len(self))
        cached = self._models.get(term)
        if cached is not None and cached[0] == key:
            return cached[1]
        votes = self.feedback.votes(term)
        _, examples = self.feedback.examples(term)
        positives = [np.stack(votes.loc[votes["net"] > 0, "embedding"].to_list())] if (votes["net"] > 0).any() else []
        if len(examples):
            positives.append(examples)
        model = None
        if positives:
            negatives = np.stack(votes.loc[votes["net"] < 0, "embedding"].to_list()) if (votes["net"] < 0).any() else None
            c = self.config
            model = TermClassifier(C=c.logistic_C, keep_rocchio=c.keep_rocchio, background_weight=c.background_weight).fit(np.vstack(positives), negatives, self.space.background_)
        result = (model, votes, len(examples))
        self._models[term] = (key, result)
        return result

    def score(self, resolution: Resolution) -> KeywordScores:
        """Score every image for a resolved word (the last word's scores are kept until its feedback changes)."""
        term = resolution.term
        key = (term, self.feedback.version(term))
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        n = len(self)
        model, votes, n_examples = self.term_model(term)
        n_positive = int((votes["net"] > 0).sum()) + n_examples
        net, judged = self.votes_by_row(votes)
        rejected_rows = np.flatnonzero(net < 0)
        resolution = doubted_classes(resolution, self.class_probabilities, rejected_rows, self.config.prior_trust[resolution.kind])
        prior = self.prior_scores(resolution)
        learned = decision = None
        if model is not None and n:
            decision = learned_decision(self.space, model, self.config, exclude=rejected_rows)
            learned = calibrate(decision, self.config)
            weight = n_positive / (n_positive + self.config.prior_strength[resolution.kind])
            score = (1.0 - weight) * prior + weight * learned
        elif (votes["net"] < 0).any() and n:
            # only "not relevant" so far: keep the prior, but push down images like the rejected ones
            rejected = np.stack(votes.loc[votes["net"] < 0, "embedding"].to_list())
            score = prior * (1.0 - similarity_to(self.space, rejected, self.config))
        else:
            score = prior.copy()
        scores = KeywordScores(resolution, score, prior, learned, net, judged, model, votes, n_examples, decision)
        self._last = (key, scores)
        return scores
