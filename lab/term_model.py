"""What a word means in this collection, learned from judgments and examples.

:class:`TermClassifier` starts as Rocchio's relevance-feedback model on
unit-length embeddings: the direction of the mean relevant example minus a
fraction of the mean non-relevant one, fitted in closed form. Once a word has
a few judgments both ways, the direction of a class-balanced logistic
regression (relevant against non-relevant) is added to it. Scoring a
collection stays one matrix-vector product.

Measured on Caltech-101 (``scripts/evaluate_caltech.py``):

* with one example, Rocchio beat a class-balanced ridge classifier trained
  against a background sample (P@20 0.70 against 0.65; 0.73 with query
  expansion, see :meth:`lab.search.SearchEngine.learned_scores`);
* with judged pages, adding the logistic direction found more relevant
  images in the next pages than Rocchio alone (for a simulated user who
  taught one example, page-2 precision 0.81 against 0.77), while the
  logistic direction alone did worse than the sum.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TermClassifier", "unit_rows"]


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32 (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class TermClassifier:
    """Linear relevance model for one query term (Rocchio).

    Parameters
    ----------
    negative_weight : float
        How much the mean non-relevant example is subtracted (Rocchio's gamma).
    C : float
        Inverse regularisation of the logistic regression.
    min_judgments : int
        Relevant and non-relevant examples each needed before the logistic
        direction is added.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
        Unit-length direction; ``decision_function`` is the cosine with it.
    intercept_ : float
        Always 0 (scores are calibrated against the collection instead).
    n_positive_, n_negative_ : int
    uses_logistic_ : bool
        Whether the logistic direction is part of ``coef_``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> pos = rng.normal(1, 0.3, (5, 8)); neg = rng.normal(-1, 0.3, (5, 8))
    >>> model = TermClassifier().fit(pos, neg)
    >>> bool(model.decision_function(unit_rows(pos)).min() > model.decision_function(unit_rows(neg)).max())
    True
    """

    def __init__(self, negative_weight: float = 0.25, C: float = 1.0, min_judgments: int = 3):
        self.negative_weight = negative_weight
        self.C = C
        self.min_judgments = min_judgments

    def fit(self, positives: np.ndarray, negatives: np.ndarray | None = None) -> "TermClassifier":
        """Fit on relevant vectors (at least one) and, optionally, non-relevant ones."""
        positives = unit_rows(np.atleast_2d(positives))
        if positives.size == 0:
            raise ValueError("at least one positive example is needed")
        direction = positives.mean(axis=0)
        n_negative = 0
        if negatives is not None and len(negatives):
            negatives = unit_rows(np.atleast_2d(negatives))
            direction = direction - self.negative_weight * negatives.mean(axis=0)
            n_negative = len(negatives)
        norm = float(np.linalg.norm(direction))
        if norm == 0.0:
            raise ValueError("positive and negative examples cancel out")
        direction = direction / norm
        self.uses_logistic_ = bool(n_negative >= self.min_judgments and len(positives) >= self.min_judgments)
        if self.uses_logistic_:
            from sklearn.linear_model import LogisticRegression

            features = np.vstack([positives, negatives])
            target = np.r_[np.ones(len(positives)), np.zeros(n_negative)]
            logistic = LogisticRegression(C=self.C, class_weight="balanced", max_iter=1000).fit(features, target)
            weights = logistic.coef_[0] / max(float(np.linalg.norm(logistic.coef_[0])), 1e-12)
            direction = direction + weights
            direction = direction / max(float(np.linalg.norm(direction)), 1e-12)
        self.coef_ = direction.astype(np.float32)
        self.intercept_ = 0.0
        self.n_positive_, self.n_negative_ = len(positives), n_negative
        return self

    def decision_function(self, unit_vectors: np.ndarray) -> np.ndarray:
        """Cosine of already unit-length vectors with the learned direction."""
        return np.asarray(unit_vectors, dtype=np.float32) @ self.coef_ + np.float32(self.intercept_)
