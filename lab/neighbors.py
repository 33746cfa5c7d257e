"""Nearest-neighbour search over embeddings: exact for small collections, faiss IVF for large.

:class:`NeighborIndex` follows scikit-learn's ``NearestNeighbors`` vocabulary
(``fit``, ``kneighbors``, ``n_neighbors``, ``metric``) and returns the same
distances as ``sklearn.metrics.pairwise_distances`` for the metrics it
supports: ``cosine`` (1 - cosine similarity), ``euclidean`` and ``manhattan``.
Exact search uses faiss's flat indexes (SIMD brute force); above
``exact_threshold`` rows an inverted-file index (IVF) is trained instead,
with ``n_probe`` chosen so that recall@10 against exact search stays above
0.99 (measured in ``scripts/bench_search.py``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["METRICS", "NeighborIndex"]

METRICS = ("cosine", "euclidean", "manhattan")


def _faiss():
    import faiss

    return faiss


class NeighborIndex:
    """k-nearest-neighbour index over the rows of a matrix.

    Parameters
    ----------
    metric : {"cosine", "euclidean", "manhattan"}
    algorithm : {"auto", "exact", "ivf"}
        ``auto`` is exact up to ``exact_threshold`` rows, IVF above.
    exact_threshold : int
        Rows above which ``auto`` builds an approximate index.
    n_lists : int, optional
        IVF cells; default ``4 * sqrt(n)``.
    n_probe : int, optional
        Cells visited per query; default ``max(16, n_lists // 8)``.

    Attributes
    ----------
    n_samples_fit_ : int
    algorithm_ : str
        ``"exact"`` or ``"ivf"``, what ``fit`` built.
    """

    def __init__(self, metric: str = "cosine", algorithm: str = "auto", exact_threshold: int = 50_000, n_lists: int | None = None, n_probe: int | None = None):
        self.metric = metric
        self.algorithm = algorithm
        self.exact_threshold = exact_threshold
        self.n_lists = n_lists
        self.n_probe = n_probe

    def _prepare(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.metric == "cosine":
            from .term_model import unit_rows

            vectors = unit_rows(vectors)
        return vectors

    def fit(self, vectors: np.ndarray) -> "NeighborIndex":
        """Index the rows of ``vectors`` (n, d)."""
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if self.algorithm not in ("auto", "exact", "ivf"):
            raise ValueError(f"algorithm must be 'auto', 'exact' or 'ivf', got {self.algorithm!r}")
        faiss = _faiss()
        data = self._prepare(vectors)
        n, d = data.shape
        faiss_metric = {"cosine": faiss.METRIC_INNER_PRODUCT, "euclidean": faiss.METRIC_L2, "manhattan": faiss.METRIC_L1}[self.metric]
        use_ivf = self.algorithm == "ivf" or (self.algorithm == "auto" and n > self.exact_threshold)
        if use_ivf:
            # 4 sqrt(n) cells, but at least 39 training points per cell (faiss's k-means minimum)
            n_lists = self.n_lists or max(1, min(int(4 * np.sqrt(n)), n // 39))
            quantizer = faiss.IndexFlat(d, faiss_metric)
            index = faiss.IndexIVFFlat(quantizer, d, n_lists, faiss_metric)
            rng = np.random.default_rng(0)
            sample = data[rng.choice(n, size=min(n, 64 * n_lists), replace=False)]
            index.train(sample)
            index.nprobe = self.n_probe or max(16, n_lists // 8)
            self._quantizer = quantizer  # faiss does not own it from Python
        else:
            index = faiss.IndexFlat(d, faiss_metric)
        index.add(data)
        self._index = index
        self.n_samples_fit_, self.n_features_in_ = n, d
        self.algorithm_ = "ivf" if use_ivf else "exact"
        return self

    def kneighbors(self, queries: np.ndarray, n_neighbors: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Distances and row indices of the nearest rows, nearest first.

        Returns
        -------
        distances : ndarray of shape (n_queries, k), float32
            In the metric's own units (cosine distance, L2, L1).
        indices : ndarray of shape (n_queries, k), int64
            ``-1`` where fewer than k rows were found.
        """
        queries = np.atleast_2d(queries)
        if queries.shape[1] != self.n_features_in_:
            raise ValueError(f"queries have {queries.shape[1]} features, the index has {self.n_features_in_}")
        k = min(int(n_neighbors), self.n_samples_fit_)
        raw, indices = self._index.search(self._prepare(queries), k)
        if self.metric == "cosine":
            distances = 1.0 - raw
        elif self.metric == "euclidean":
            distances = np.sqrt(np.maximum(raw, 0.0))
        else:
            distances = raw
        return distances.astype(np.float32), indices.astype(np.int64)
