"""Query by example: the images nearest a query image (or feature vector) on one layer and metric."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..neighbors import NeighborIndex
from ..vectors import LAYERS

__all__ = ["QueryImage", "SimilarImages"]


@dataclass
class QueryImage:
    """An image given as a query: its features, and its row if it is in the collection."""

    embedding: np.ndarray  # (d,) float32
    class_probabilities: np.ndarray  # (N_CLASSES,) float32
    sha256: str
    row: int | None
    source: str

    def layer(self, layer: str) -> np.ndarray:
        """The query's vector on ``layer`` ("transfer" or "output")."""
        if layer not in LAYERS:
            raise ValueError(f"layer must be 'transfer' (embeddings) or 'output' (class probabilities), got {layer!r}")
        return self.embedding if layer == "transfer" else self.class_probabilities


class SimilarImages:
    """Nearest-neighbour indexes over a collection's layers, one per (metric, layer), built on first use.

    Parameters
    ----------
    arrays : dict
        Layer name ("transfer", "output") -> its array (n_images, d).

    Examples
    --------
    >>> vectors = np.eye(3, dtype=np.float32)
    >>> rows, distances, _ = SimilarImages({"transfer": vectors}).kneighbors(vectors[0], 2, "euclidean", "transfer", exclude=0)
    >>> rows.tolist(), [round(float(d), 3) for d in distances]
    ([1, 2], [1.414, 1.414])
    """

    def __init__(self, arrays: dict):
        self.arrays = arrays
        self._indexes: dict = {}

    def index(self, metric: str, layer: str) -> NeighborIndex:
        """The fitted index of one layer and metric."""
        key = (metric, layer)
        if key not in self._indexes:
            # euclidean and manhattan share one approximate index where it can serve both
            shared = [index.with_metric(metric) for (other, on), index in self._indexes.items() if on == layer and other != metric]
            shared = [index for index in shared if index is not None]
            self._indexes[key] = shared[0] if shared else NeighborIndex(metric=metric).fit(self.arrays[layer])
        return self._indexes[key]

    def kneighbors(self, vector: np.ndarray, k: int, metric: str, layer: str, exclude: int | None = None) -> tuple[np.ndarray, np.ndarray, str]:
        """Rows and distances of the ``k`` nearest images (``exclude``, the query's own row, left out), and the index kind."""
        index = self.index(metric, layer)
        distances, rows = index.kneighbors(vector[None], k + (exclude is not None))
        distances, rows = distances[0], rows[0]
        keep = (rows >= 0) & (rows != (exclude if exclude is not None else -1))
        return rows[keep][:k], distances[keep][:k], index.algorithm_
