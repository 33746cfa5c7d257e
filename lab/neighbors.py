"""Nearest-neighbour search over embeddings: exact for small collections, faiss HNSW or IVF for large.

:class:`NeighborIndex` follows scikit-learn's ``NearestNeighbors`` vocabulary
(``fit``, ``kneighbors``, ``n_neighbors``, ``metric``) and returns the same
distances as ``sklearn.metrics.pairwise_distances`` for the metrics it
supports: ``cosine`` (1 - cosine similarity), ``euclidean`` and ``manhattan``.
Exact search uses faiss's flat indexes (SIMD brute force); above
``exact_threshold`` rows an inverted-file index (IVF) is trained instead,
with ``n_probe`` chosen so that recall@10 against exact search stays above
0.99 (measured in ``scripts/bench_search.py``). Above ``compress_threshold``
rows the IVF lists hold product-quantised codes (``pq_bytes`` bytes a row
instead of 4 a dimension: 64 bytes for a 1280-d embedding, an eightieth of
float32) and only propose candidates: the best ``rerank`` x k of them are
re-ranked with exact distances read from the original (memory-mapped) rows,
so the distances returned are always exact. Vectors are added in blocks and
the pages of a memory map released after each (:func:`lab.vectors.row_blocks`),
so a float16 memory map of any size is indexed without a float32 copy of it
and without staying resident.
Between ``exact_threshold`` and ``compress_threshold`` rows ``auto`` builds a
faiss HNSW graph (``IndexHNSWFlat``, also ``algorithm="hnsw"``): on 68,644 real
embeddings it gives cosine recall@10 0.998 at 0.53 ms per query where IVF
needs 1.74 ms for 0.997 (``results/bench_neighbors.md``), for ``2 * hnsw_m``
links per row on top of the float32 vectors IVF keeps too.
"""

from __future__ import annotations

import numpy as np

from .vectors import read_rows, row_blocks, unit_rows

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
    algorithm : {"auto", "exact", "ivf", "hnsw"}
        ``auto`` is exact up to ``exact_threshold`` rows, HNSW up to
        ``compress_threshold``, compressed IVF above; ``hnsw`` is a faiss HNSW
        graph over the float32 rows (any metric).
    exact_threshold : int
        Rows above which ``auto`` builds an approximate index.
    n_lists : int, optional
        IVF cells; default ``4 * sqrt(n)``.
    n_probe : int, optional
        Cells visited per query; default ``max(16, n_lists // 8)``.
    compress_threshold : int
        Rows above which ``auto`` builds a compressed IVF index (PQ codes).
    rerank : int
        A compressed index proposes ``rerank`` x k candidates (at least 100;
        twice as many for manhattan, whose candidates come from L2),
        re-ranked with exact distances.
    pq_bytes : int
        Bytes of a product-quantised code: the largest divisor of the
        dimension up to this many sub-quantisers of 8 bits.
    hnsw_m : int
        Links per node of the HNSW graph.
    hnsw_candidates : int
        Manhattan distances have no fast HNSW search of their own: the
        euclidean graph proposes ``hnsw_candidates`` x k rows (at least 40),
        re-ranked with exact L1 distances from the graph's own vectors. On
        real embeddings 16 x 10 candidates give recall@10 0.992 at 0.92 ms
        where an L1 graph needs 1.38 ms for 0.995 (``results/bench_neighbors.md``).
    ef_search : int, optional
        Candidates the HNSW search keeps (recall against speed); default 128
        (recall@10 >= 0.99 on real embeddings, see above).

    Attributes
    ----------
    n_samples_fit_ : int
    algorithm_ : str
        ``"exact"``, ``"ivf"``, ``"ivf-pq"`` or ``"hnsw"``, what ``fit`` built.
    """

    def __init__(
        self,
        metric: str = "cosine",
        algorithm: str = "auto",
        exact_threshold: int = 50_000,
        n_lists: int | None = None,
        n_probe: int | None = None,
        compress_threshold: int = 200_000,
        rerank: int = 40,
        pq_bytes: int = 64,
        hnsw_m: int = 32,
        hnsw_candidates: int = 16,
        ef_search: int | None = None,
    ):
        self.metric = metric
        self.algorithm = algorithm
        self.exact_threshold = exact_threshold
        self.n_lists = n_lists
        self.n_probe = n_probe
        self.compress_threshold = compress_threshold
        self.rerank = rerank
        self.pq_bytes = pq_bytes
        self.hnsw_m = hnsw_m
        self.hnsw_candidates = hnsw_candidates
        self.ef_search = ef_search

    def _prepare(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.metric == "cosine":
            vectors = unit_rows(vectors)
        return vectors

    def fit(self, vectors: np.ndarray) -> "NeighborIndex":
        """Index the rows of ``vectors`` (n, d); a memory map is read in chunks and kept for re-ranking."""
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if self.algorithm not in ("auto", "exact", "ivf", "hnsw"):
            raise ValueError(f"algorithm must be 'auto', 'exact', 'ivf' or 'hnsw', got {self.algorithm!r}")
        faiss = _faiss()
        n, d = vectors.shape
        faiss_metric = {"cosine": faiss.METRIC_INNER_PRODUCT, "euclidean": faiss.METRIC_L2, "manhattan": faiss.METRIC_L1}[self.metric]
        use_hnsw = self.algorithm == "hnsw" or (self.algorithm == "auto" and self.exact_threshold < n <= self.compress_threshold)
        use_ivf = self.algorithm == "ivf" or (self.algorithm == "auto" and n > self.compress_threshold)
        compressed = use_ivf and n > self.compress_threshold
        if compressed or (use_hnsw and self.metric == "manhattan"):
            # product quantisation has no L1 scanner and an L1 graph is slow to search: manhattan
            # candidates come from L2, re-ranked exactly
            faiss_metric = faiss.METRIC_INNER_PRODUCT if self.metric == "cosine" else faiss.METRIC_L2
        if use_ivf:
            # 4 sqrt(n) cells, at least 39 training points per cell (faiss's k-means minimum),
            # and at most 1024, which keeps training a million-row index to about a minute on 2 cores
            n_lists = self.n_lists or max(1, min(int(4 * np.sqrt(n)), n // 39, 1024))
            quantizer = faiss.IndexFlat(d, faiss_metric)
            if compressed:
                n_codes = max(m for m in range(1, min(self.pq_bytes, d) + 1) if d % m == 0)
                index = faiss.IndexIVFPQ(quantizer, d, n_lists, n_codes, 8, faiss_metric)
            else:
                index = faiss.IndexIVFFlat(quantizer, d, n_lists, faiss_metric)
            rng = np.random.default_rng(0)
            sample = np.sort(rng.choice(n, size=min(n, 50 * n_lists), replace=False))
            index.train(self._prepare(read_rows(vectors, sample)))
            index.nprobe = self.n_probe or max(16, n_lists // 8)
            self._quantizer = quantizer  # faiss does not own it from Python
        elif use_hnsw:
            index = faiss.IndexHNSWFlat(d, int(self.hnsw_m), faiss_metric)
            index.hnsw.efConstruction = 80
            index.hnsw.efSearch = int(self.ef_search or 128)
        else:
            index = faiss.IndexFlat(d, faiss_metric)
        for _, block in row_blocks(vectors, 16_384):  # faiss's own copies of a block are of its size
            index.add(self._prepare(block))
        self._index = index
        self.n_samples_fit_, self.n_features_in_ = n, d
        self.algorithm_ = ("ivf-pq" if compressed else "ivf") if use_ivf else ("hnsw" if use_hnsw else "exact")
        if compressed:
            self._source = vectors
        elif use_hnsw:  # the graph's own float32 vectors, for exact re-ranking: a view, valid while self._index lives
            self._source = faiss.rev_swig_ptr(faiss.downcast_index(index.storage).get_xb(), n * d).reshape(n, d)
            self._source.flags.writeable = False
        else:
            self._source = None
        return self

    def _n_candidates(self, k: int) -> int:
        """Rows to propose for an exact re-ranking of ``k``, or 0 when the index's own distances are exact."""
        if self.algorithm_ == "ivf-pq":
            return min(self.n_samples_fit_, max(self.rerank * k, 100) * (2 if self.metric == "manhattan" else 1))
        if self.algorithm_ == "hnsw" and self.metric == "manhattan":
            return min(self.n_samples_fit_, max(self.hnsw_candidates * k, 40))
        return 0

    def with_metric(self, metric: str) -> "NeighborIndex | None":
        """This index answering ``metric`` too (euclidean <-> manhattan, sharing one L2 index), or None when it cannot.

        An HNSW graph or compressed index over the raw vectors proposes the
        same candidates for both; only the exact re-ranking differs, so the
        two metrics need one index's memory.
        """
        if metric == self.metric:
            return self
        if {metric, self.metric} != {"euclidean", "manhattan"} or self.algorithm_ not in ("hnsw", "ivf-pq"):
            return None
        import copy

        other = copy.copy(self)  # shares the faiss index and the source rows
        other.metric = metric
        return other

    def _exact(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Exact distances from one prepared query to some rows of the source."""
        candidates = self._prepare(read_rows(self._source, rows))
        if self.metric == "cosine":
            return 1.0 - candidates @ query
        if self.metric == "euclidean":
            return np.sqrt(((candidates - query) ** 2).sum(axis=1))
        return np.abs(candidates - query).sum(axis=1)

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
        prepared = self._prepare(queries)
        n_candidates = self._n_candidates(k)
        if n_candidates:  # the index proposes, exact distances decide
            if self.algorithm_ == "hnsw":
                params = _faiss().SearchParametersHNSW(efSearch=max(int(self._index.hnsw.efSearch), n_candidates))
                _, proposed = self._index.search(prepared, n_candidates, params=params)
            else:
                _, proposed = self._index.search(prepared, n_candidates)
            distances = np.full((len(queries), k), np.inf, np.float32)
            indices = np.full((len(queries), k), -1, np.int64)
            for i, rows in enumerate(proposed):
                rows = rows[rows >= 0]
                exact = self._exact(prepared[i], rows)
                best = np.argsort(exact, kind="stable")[:k]
                distances[i, : len(best)], indices[i, : len(best)] = exact[best], rows[best]
            return distances, indices
        raw, indices = self._index.search(prepared, k)
        if self.metric == "cosine":
            distances = 1.0 - raw
        elif self.metric == "euclidean":
            distances = np.sqrt(np.maximum(raw, 0.0))
        else:
            distances = raw
        return distances.astype(np.float32), indices.astype(np.int64)
