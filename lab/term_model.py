"""What a word means in this collection, learned from judgments and examples.

:class:`TermClassifier` is a direction in embedding space; scoring a
collection stays one matrix-vector product. Until a word has
``min_judgments`` judgments each way (a taught image, a first judged page),
it is Rocchio's relevance-feedback model on unit-length embeddings: the
direction of the mean relevant example minus a fraction of the mean
non-relevant one, fitted in closed form. From then on it is the direction of
a class-balanced logistic regression (relevant against non-relevant).

What it reaches is in ``results/evaluation_*.md`` (written by
``scripts/evaluate_collections.py``). The design was chosen by runs of the
simulated user across Caltech-101, flower_photos_600 and two look-alike
subsets of Caltech-101:

* with one example, Rocchio beat a class-balanced ridge classifier trained
  against a background sample, and query expansion
  (:func:`lab.search.keywords.learned_scores`) added to it (figures in the
  README's design notes);
* with judged pages, the logistic direction alone with ``C=10`` found more
  relevant images in four pages on flower_photos_600 (60.6 -> 63.3 with the
  same exploration, mean of three exploration seeds) than the sum of
  Rocchio's and a more regularised logistic direction (``C=1``) that earlier
  runs on Caltech-101 had chosen, and about as many on the Caltech-101
  collections (``results/evaluation_design_choices.md``, configurations
  "broad groups" and "+ logistic alone"): where everything looks alike, the
  mean relevant image mostly says "a flower". From one judgment each way it
  followed an odd taught example too closely, so Rocchio keeps a word's
  first judgments;
* checked on CIFAR-10, which none of that was tuned on: while fewer images
  are judged not relevant than relevant (pages of a word the vocabulary
  knows, with a few look-alikes rejected), the regression also contrasts
  the relevant images with a sample of the collection (``background`` in
  :meth:`TermClassifier.fit`). Without it, 57 dogs against 3 cats gave a
  direction that meant "not a cat", and the fourth page for "dog" held no
  dog; with it that page holds 20 (``results/background_negatives.md``, the
  four collections above within what exploration seeds move there and in
  ``results/evaluation_design_choices.md``).
"""

from __future__ import annotations

import numpy as np

from .vectors import unit_rows

__all__ = ["TermClassifier", "logistic_direction"]


def logistic_direction(features: np.ndarray, target: np.ndarray, sample_weight: np.ndarray, C: float = 1.0, n_iterations: int = 50) -> np.ndarray:
    """Unit coefficient vector of an L2-regularised logistic regression (the same model as scikit-learn's).

    Minimises ``C * sum(w_i * log-loss_i) + |coef|^2 / 2`` with an
    unpenalised intercept, like ``LogisticRegression(C=C).fit(..., sample_weight=...)``.
    The solution lies in the span of the examples, so it is solved there by
    Newton's method: with a few dozen judgments that is a few dozen unknowns
    instead of one per embedding dimension: 60 judgments take about 1 ms
    where scikit-learn's general solver took 15 ms.
    """
    from scipy.special import expit

    # an orthonormal basis of the examples' span from their Gram matrix (n x n: cheap while n << d)
    values, vectors = np.linalg.eigh(features @ features.T)
    keep = values > max(values.max(), 1e-300) * 1e-10
    values, vectors = values[keep], vectors[:, keep]
    design = np.hstack([vectors * np.sqrt(values), np.ones((len(features), 1))])  # span coordinates + intercept
    penalty = np.r_[np.ones(design.shape[1] - 1), 0.0]
    params = np.zeros(design.shape[1])
    for _ in range(n_iterations):
        probability = expit(design @ params)
        gradient = C * design.T @ (sample_weight * (probability - target)) + penalty * params
        curvature = sample_weight * probability * (1.0 - probability)
        hessian = C * (design.T * curvature) @ design + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        params -= step
        if np.abs(step).max() < 1e-8:
            break
    # back from span coordinates to a direction: params @ basis, with basis = vectors.T @ features / sqrt(values)
    coef = ((params[:-1] / np.sqrt(values)) @ vectors.T) @ features
    return coef / max(float(np.linalg.norm(coef)), 1e-12)


def _least_like(background: np.ndarray, mean_positive: np.ndarray) -> np.ndarray:
    """The half of ``background`` (unit rows) least like ``mean_positive``: images unlikely to show the word."""
    likeness = background @ mean_positive
    return background[np.argsort(likeness, kind="stable")[: max(1, len(background) // 2)]]


class TermClassifier:
    """Linear relevance model for one query term: Rocchio, then logistic regression once judged both ways.

    Parameters
    ----------
    negative_weight : float
        How much the mean non-relevant example is subtracted (Rocchio's gamma).
    C : float
        Inverse regularisation of the logistic regression.
    min_judgments : int
        Relevant and non-relevant examples each needed before the logistic
        direction replaces Rocchio's.
    max_judgments : int
        At most this many examples per side enter the logistic regression
        (evenly spaced through them), which bounds a refit's cost.
    keep_rocchio : bool
        Add the logistic direction to Rocchio's instead of replacing it (what
        ``lab`` did before ``C=10``; kept to measure against).
    background_weight : float
        Up to this share of the non-relevant side's weight goes to
        ``background`` images (see :meth:`fit`) once the logistic direction
        is used: ``background_weight * (1 - n_negative / n_positive)``, none
        once as many were judged not relevant as relevant. Judged pages of a
        word the vocabulary knows are mostly relevant, and the few rejected
        images are look-alikes: on CIFAR-10, 57 dogs against 3 cats gave a
        "not a cat" direction whose next page held no dog
        (``results/background_negatives.md``). 0 turns it off.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
        Unit-length direction; ``decision_function`` is the cosine with it.
    intercept_ : float
        Always 0 (scores are calibrated against the collection instead).
    n_positive_, n_negative_ : int
    uses_logistic_ : bool
        Whether the logistic direction is ``coef_`` (or, with
        ``keep_rocchio``, part of it); False: Rocchio's alone.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> pos = rng.normal(1, 0.3, (5, 8)); neg = rng.normal(-1, 0.3, (5, 8))
    >>> model = TermClassifier().fit(pos, neg)
    >>> bool(model.decision_function(unit_rows(pos)).min() > model.decision_function(unit_rows(neg)).max())
    True
    """

    def __init__(self, negative_weight: float = 0.25, C: float = 10.0, min_judgments: int = 3, max_judgments: int = 150, keep_rocchio: bool = False,
                 background_weight: float = 0.5):
        self.negative_weight = negative_weight
        self.C = C
        self.min_judgments = min_judgments
        self.max_judgments = max_judgments
        self.keep_rocchio = keep_rocchio
        self.background_weight = background_weight

    def fit(self, positives: np.ndarray, negatives: np.ndarray | None = None, background: np.ndarray | None = None) -> "TermClassifier":
        """Fit on relevant vectors (at least one) and, optionally, non-relevant ones.

        ``background`` (optional): a sample of the collection, unjudged. The
        half of it least like the mean relevant example (so unlikely to show
        the word) joins the non-relevant side of the logistic regression with
        ``background_weight * max(0, 1 - n_negative / n_positive)`` of that
        side's weight.
        """
        if self.C <= 0 or self.min_judgments < 1 or self.max_judgments < 1 or not 0 <= self.background_weight <= 1:
            raise ValueError(f"C must be above 0, min_judgments and max_judgments at least 1, background_weight within [0, 1]; got "
                             f"{self.C}, {self.min_judgments}, {self.max_judgments}, {self.background_weight}")
        positives = unit_rows(np.atleast_2d(positives))
        if positives.size == 0:
            raise ValueError("at least one positive example is needed")
        rocchio = positives.mean(axis=0)
        n_negative = 0
        if negatives is not None and len(negatives):
            negatives = unit_rows(np.atleast_2d(negatives))
            rocchio = rocchio - self.negative_weight * negatives.mean(axis=0)
            n_negative = len(negatives)
        rocchio_norm = float(np.linalg.norm(rocchio))
        direction = None
        self.uses_logistic_ = bool(n_negative >= self.min_judgments and len(positives) >= self.min_judgments)
        if self.uses_logistic_:
            sides = [self._at_most(positives), self._at_most(negatives)]
            shares = [0.5, 0.5]  # class-balanced: each side weighs as much in total, whatever its count
            fill = self.background_weight * max(0.0, 1.0 - n_negative / len(positives))
            if fill > 0 and background is not None and len(background):
                sides.append(_least_like(unit_rows(np.atleast_2d(background)), positives.mean(axis=0)))
                shares = [0.5, 0.5 * (1.0 - fill), 0.5 * fill]
            features = np.vstack(sides).astype(np.float64)
            target = np.r_[np.ones(len(sides[0])), np.zeros(len(features) - len(sides[0]))]
            weight = np.concatenate([np.full(len(side), share / len(side)) for side, share in zip(sides, shares)]) * len(target)
            logistic = logistic_direction(features, target, weight, self.C)
            if self.keep_rocchio and rocchio_norm > 0.0:  # the sum of both directions (the model before issue 8)
                logistic = logistic + rocchio / rocchio_norm
            norm = float(np.linalg.norm(logistic))
            if norm > 1e-3:
                direction = logistic / norm
            else:  # the judgments do not separate (the same image judged both ways): Rocchio's mean
                self.uses_logistic_ = False
        if direction is None:
            if rocchio_norm == 0.0:
                raise ValueError("positive and negative examples cancel out")
            direction = rocchio / rocchio_norm
        self.coef_ = direction.astype(np.float32)
        self.intercept_ = 0.0
        self.n_positive_, self.n_negative_ = len(positives), n_negative
        return self

    def _at_most(self, examples: np.ndarray) -> np.ndarray:
        if len(examples) <= self.max_judgments:
            return examples
        return examples[np.linspace(0, len(examples) - 1, self.max_judgments).astype(np.int64)]

    def decision_function(self, unit_vectors: np.ndarray) -> np.ndarray:
        """Cosine of already unit-length vectors with the learned direction."""
        return np.asarray(unit_vectors, dtype=np.float32) @ self.coef_ + np.float32(self.intercept_)
