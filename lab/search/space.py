"""The arrays keyword scoring reads: the scoring space of word models and the sparse class matrix.

Both are built once per collection state from its (float16, possibly
memory-mapped) arrays, a block of rows at a time.
"""

from __future__ import annotations

import numpy as np

from ..vectors import read_rows, row_blocks, unit_rows

__all__ = ["ScoringSpace", "class_matrix", "class_matrix_and_top"]


class ScoringSpace:
    """Vectors the learned word models score, and the projection into them.

    Up to ``pca_threshold`` images: the unit-length embeddings themselves (no
    projection). Above: the unit embeddings, centred on their mean, projected
    on their top ``pca_dimensions`` principal axes (fitted on a seeded sample
    of ``sample_size``), computed ``block_size`` rows at a time straight from
    the float16 store, which makes scoring a word several times cheaper in
    time and memory at 100,000+ images.

    Parameters
    ----------
    pca_threshold, pca_dimensions, sample_size, block_size : int
        See :class:`lab.search.SearchConfig` (``pca_*``, ``pca_sample``, ``block_size``).
    background_size : int
        Images in :attr:`background_` (``SearchConfig.background_sample``).

    Attributes
    ----------
    vectors_ : ndarray of shape (n_images, d) or (n_images, pca_dimensions), float32
    axes_ : ndarray of shape (d, pca_dimensions) or None
        Principal axes, None when the embeddings are used as they are.
    mean_ : ndarray of shape (d,) or None
        Mean of the sampled unit embeddings (subtracted before projecting).
    background_ : ndarray of shape (min(n_images, background_size), d), float32
        A seeded sample of the unit embeddings: what the collection holds
        besides a word (:meth:`lab.term_model.TermClassifier.fit`'s ``background``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> space = ScoringSpace(pca_threshold=50, pca_dimensions=4).fit(rng.normal(size=(100, 8)))
    >>> space.vectors_.shape, space.project(np.ones((2, 8))).shape
    ((100, 4), (2, 4))
    """

    def __init__(self, pca_threshold: int = 50_000, pca_dimensions: int = 128, sample_size: int = 20_000, block_size: int = 16_384, background_size: int = 256):
        self.pca_threshold = pca_threshold
        self.pca_dimensions = pca_dimensions
        self.sample_size = sample_size
        self.block_size = block_size
        self.background_size = background_size

    def fit(self, embeddings: np.ndarray) -> "ScoringSpace":
        """Build the scoring vectors of ``embeddings`` (n_images, d)."""
        n = len(embeddings)
        rows = np.sort(np.random.default_rng(1).choice(n, size=min(n, self.background_size), replace=False))
        self.background_ = unit_rows(read_rows(embeddings, rows)).astype(np.float32, copy=False)
        if n <= self.pca_threshold:
            self.vectors_, self.axes_, self.mean_ = unit_rows(embeddings), None, None
            return self
        rng = np.random.default_rng(0)
        sample = unit_rows(read_rows(embeddings, np.sort(rng.choice(n, size=min(n, self.sample_size), replace=False))))
        mean = sample.mean(axis=0)
        # principal axes of the centred unit vectors: eigenvectors of their d x d scatter matrix, largest
        # first (the SVD of the sample itself gives the same axes for several times the memory)
        centred = sample - mean
        values, vectors = np.linalg.eigh((centred.T @ centred).astype(np.float64))
        axes = np.ascontiguousarray(vectors[:, ::-1][:, : self.pca_dimensions], dtype=np.float32)  # (d, r)
        projected = np.empty((n, axes.shape[1]), np.float32)
        for start, block in row_blocks(embeddings, self.block_size):
            projected[start : start + len(block)] = (unit_rows(block) - mean) @ axes
        self.vectors_, self.axes_, self.mean_ = projected, axes, mean
        return self

    def project(self, directions: np.ndarray) -> np.ndarray:
        """Directions in embedding space (d,) or (m, d) -> directions in the scoring space.

        A direction is projected without centring: its dot products with the
        scoring vectors then differ from those with the unit embeddings by the
        same constant for every image, so rankings are kept.
        """
        return directions if self.axes_ is None else directions @ self.axes_


def class_matrix(class_probabilities: np.ndarray, floor: float = 1e-3, block_size: int = 16_384):
    """Class probabilities as a sparse column-major matrix, entries below ``floor`` dropped (:func:`class_matrix_and_top`'s matrix).

    >>> matrix = class_matrix(np.array([[0.5, 0.0005, 0.4995]]), floor=1e-3)
    >>> matrix.nnz, float(matrix[0, 1]), matrix.format
    (2, 0.0, 'csc')
    """
    return class_matrix_and_top(class_probabilities, floor, block_size)[0]


def class_matrix_and_top(class_probabilities: np.ndarray, floor: float = 1e-3, block_size: int = 16_384):
    """Class probabilities as a sparse column-major matrix, entries below ``floor`` dropped, and each image's top probability.

    Values keep float16 when the probabilities are float16 (a collection's
    are), float32 otherwise, so nothing is rounded; scipy's own operations
    (slicing, ``toarray``) need float32, :func:`lab.search.keywords.prior_scores`
    reads either.

    A word's prior is then one pass over its classes' columns; the dropped
    tail (classes an image gives under 0.1% each at the default floor) cannot
    lift an image over :attr:`SearchConfig.min_score <lab.search.SearchConfig>`
    on its own. Built in two passes of ``block_size`` rows (count, then
    fill), so building it needs no more memory than the matrix itself: 6 bytes
    an entry, 54 entries an image on Caltech-101 with EfficientNet-Lite0.
    The top probability of each image (how sure the network is of what it
    shows, float32, 4 bytes an image) comes out of the first pass at no
    extra read.

    >>> matrix, top = class_matrix_and_top(np.array([[0.5, 0.0005, 0.4995]]), floor=1e-3)
    >>> matrix.nnz, top.tolist()
    (2, [0.5])
    """
    from scipy import sparse

    n, width = class_probabilities.shape
    counts = np.zeros(width, np.int64)
    top = np.empty(n, np.float32)
    for start, block in row_blocks(class_probabilities, block_size):
        counts += (block >= floor).sum(axis=0)
        top[start : start + len(block)] = block.max(axis=1)
    indptr = np.r_[0, np.cumsum(counts)]
    index_type = np.int32 if n < 2**31 else np.int64
    indices = np.empty(indptr[-1], index_type)
    data = np.empty(indptr[-1], np.float16 if np.dtype(class_probabilities.dtype) == np.float16 else np.float32)
    cursor = indptr[:-1].copy()  # where each column's next entry goes
    for start, block in row_blocks(class_probabilities, block_size):
        columns, rows = np.nonzero(block.T >= floor)  # by column, then row
        in_block = np.bincount(columns, minlength=width)
        first = np.cumsum(in_block) - in_block  # each column's first entry in this block
        positions = cursor[columns] + np.arange(len(columns)) - first[columns]
        indices[positions] = rows + start
        data[positions] = block[rows, columns]
        cursor += in_block
    return sparse.csc_matrix((data, indices, indptr), shape=(n, width), copy=False), top

