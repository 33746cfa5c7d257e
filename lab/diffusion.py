"""Re-ranking the best candidates of a learned word by diffusion on their nearest-neighbour graph.

A linear model on embeddings ranks images by one direction; images of the
same object that sit a little off that direction (other poses, other
backgrounds) fall behind images of other objects that happen to lie along
it. Diffusion (manifold ranking, Zhou et al. 2004; as used for image
retrieval by Iscen et al., CVPR 2017) spreads relevance from the examples
through chains of close neighbours instead, which follows the shape of a
class. Only the ``n_candidates`` best images of the linear model and the
examples take part, so the cost does not grow with the collection: a
candidate graph of 1,000 images costs a few tens of milliseconds whatever
the collection's size.

Measured on Caltech-101 with one taught example (``scripts/evaluate_caltech.py``),
see the README's design notes for the figures.
"""

from __future__ import annotations

import numpy as np

__all__ = ["diffusion_scores", "rerank_top"]


def diffusion_scores(
    vectors: np.ndarray,
    seeds: np.ndarray,
    n_neighbors: int = 40,
    alpha: float = 0.99,
    n_iterations: int = 20,
) -> np.ndarray:
    """Relevance spread from seed weights over the mutual k-nearest-neighbour graph of ``vectors``.

    Parameters
    ----------
    vectors : ndarray of shape (n, d)
        Unit-length vectors of the nodes (cosine similarity is their dot product).
    seeds : ndarray of shape (n,)
        Starting relevance: positive for examples, negative for rejected
        images, 0 for the rest.
    n_neighbors : int
        Edges per node before keeping only mutual ones.
    alpha : float
        How far relevance travels, in (0, 1).
    n_iterations : int
        Steps of ``f <- alpha * S f + seeds`` (a truncated series; enough to
        order the nodes, which is all it is used for).

    Returns
    -------
    ndarray of shape (n,)
    """
    vectors = np.asarray(vectors, np.float32)
    n = len(vectors)
    seeds = np.asarray(seeds, np.float32)
    k = min(n_neighbors, n - 1)
    if k < 1:
        return seeds.copy()
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    neighbors = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    weights = np.maximum(np.take_along_axis(similarity, neighbors, axis=1), 0.0) ** 3
    affinity = np.zeros((n, n), np.float32)
    affinity[np.repeat(np.arange(n), k), neighbors.ravel()] = weights.ravel()
    affinity = np.minimum(affinity, affinity.T)  # mutual neighbours only: hubs do not spread everywhere
    degree = affinity.sum(axis=1)
    scale = 1.0 / np.sqrt(np.where(degree > 0, degree, 1.0))
    affinity *= scale[:, None]
    affinity *= scale[None, :]
    relevance = seeds.copy()
    for _ in range(n_iterations):
        relevance = alpha * (affinity @ relevance) + seeds
    return relevance


def rerank_top(
    vectors: np.ndarray,
    decision: np.ndarray,
    positives: np.ndarray,
    negatives: np.ndarray | None = None,
    outside_positives: np.ndarray | None = None,
    n_candidates: int = 1000,
    negative_weight: float = 0.25,
    **diffusion,
) -> np.ndarray:
    """Re-order the ``n_candidates`` best rows of ``decision`` by diffusion from the examples.

    The candidates keep the set of decision values they had, handed out
    again in diffusion order, so scores stay on the same (calibrated) scale
    and every other row is untouched.

    Parameters
    ----------
    vectors : ndarray of shape (n_rows, d)
        Unit-length vectors of the collection (or their projection).
    decision : ndarray of shape (n_rows,)
        The linear model's scores.
    positives, negatives : ndarray of int
        Rows judged relevant / not relevant.
    outside_positives : ndarray of shape (m, d), optional
        Examples that are not in the collection (taught images), in the same space.

    Returns
    -------
    ndarray of shape (n_rows,)
        ``decision`` with its top values re-assigned.
    """
    n = len(decision)
    positives = np.asarray(positives, np.int64)
    negatives = np.zeros(0, np.int64) if negatives is None else np.asarray(negatives, np.int64)
    outside = np.zeros((0, vectors.shape[1]), np.float32) if outside_positives is None else np.asarray(outside_positives, np.float32)
    m = min(n_candidates, n)
    if m < 2 or (len(positives) + len(outside)) == 0:
        return decision
    top = np.argpartition(-decision, m - 1)[:m] if m < n else np.arange(n)
    nodes = np.union1d(np.union1d(top, positives), negatives)
    seeds = np.zeros(len(nodes) + len(outside), np.float32)
    seeds[np.searchsorted(nodes, positives)] = 1.0
    if len(negatives):
        seeds[np.searchsorted(nodes, negatives)] = -negative_weight
    seeds[len(nodes):] = 1.0
    node_vectors = np.vstack([np.asarray(vectors[nodes], np.float32), outside])
    relevance = diffusion_scores(node_vectors, seeds, **diffusion)[: len(nodes)]
    # hand the candidates' own decision values back out in diffusion order
    in_top = np.isin(nodes, top)
    candidates, relevance = nodes[in_top], relevance[in_top]
    order = candidates[np.lexsort((candidates, -relevance))]
    reranked = decision.copy()
    reranked[order] = np.sort(decision[candidates])[::-1]
    return reranked
