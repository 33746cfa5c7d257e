"""Pages of images to judge for a word nothing is known about yet.

When the vocabulary has no (or only wrong) evidence for a word, the user has
to find the first example. :class:`Explorer` proposes pages that make that
quick:

* **typical images of distinct groups, broad ones first**: a seeded sample
  of the collection (``pool_size`` images, so the cost does not grow with the
  collection) is clustered twice with spherical k-means (faiss, k-means++
  seeds): into a few broad groups (``n_broad``), then into many finer ones
  (``n_clusters``). The first images to judge are the most typical of each
  broad group, so in a collection where everything looks alike (a folder of
  flowers) the first page already shows each kind; then come the finer
  groups. Every image shown stands for many like it;
* **groups ImageNet cannot name first**: a word outside the vocabulary most
  likely names something the network has no class for, so clusters are
  taken in order of how unsure the network is about their images (one minus
  the top class probability). On Caltech-101, images of the classes ImageNet
  does not cover make up 40% of the collection but 73% of its 20% most
  uncertain images;
* **away from what was rejected**: a group holding an image already judged
  or shown (at that level) gives no further image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .vectors import read_rows, unit_rows

__all__ = ["Explorer", "ImageGroups"]


def _kmeans_plus_plus(points: np.ndarray, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeds (Arthur and Vassilvitskii 2007) for unit vectors, distance 1 - cosine.

    Random seeds can put two centres in one tight group and none in another
    (a page would then show two crops of one photo); seeds drawn with
    probability proportional to their squared distance from the seeds so far
    spread over the groups.
    """
    chosen = [int(rng.integers(len(points)))]
    distance = np.maximum(1.0 - points @ points[chosen[0]], 0.0) ** 2
    for _ in range(n_clusters - 1):
        total = distance.sum()
        pick = int(rng.choice(len(points), p=distance / total)) if total > 0 else int(rng.integers(len(points)))
        chosen.append(pick)
        distance = np.minimum(distance, np.maximum(1.0 - points @ points[pick], 0.0) ** 2)
    return np.ascontiguousarray(points[chosen], dtype=np.float32)


def _seeded_pool(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``size`` distinct rows of ``n``, drawn with ``rng``, in row order."""
    return np.sort(rng.choice(n, size=min(size, n), replace=False)) if n else np.zeros(0, np.int64)


def _spherical_centres(points: np.ndarray, n_clusters: int, rng: np.random.Generator, seed: int) -> np.ndarray:
    """Unit centres of spherical k-means (faiss, 20 iterations) over unit ``points``, seeded by k-means++.

    One cluster or fewer: the unit mean of the points (a zero row when there are none).
    """
    if n_clusters <= 1:
        return unit_rows(points.mean(axis=0, keepdims=True)) if len(points) else np.zeros((1, points.shape[1]), np.float32)
    import faiss

    kmeans = faiss.Kmeans(points.shape[1], n_clusters, niter=20, spherical=True, seed=seed, min_points_per_centroid=1)
    kmeans.train(points, init_centroids=_kmeans_plus_plus(points, n_clusters, rng))
    return unit_rows(kmeans.centroids)


@dataclass
class _ClusterLevel:
    """One clustering of the explorer's pool.

    Attributes
    ----------
    centroids : ndarray of shape (n_clusters, d)
        Unit centres.
    cluster : ndarray of int
        Cluster of each pooled row.
    centrality : ndarray of float
        Cosine of each pooled row with its cluster's centre.
    order : ndarray of int
        Clusters in visiting order: least familiar to the network first, then larger first.
    """

    centroids: np.ndarray
    cluster: np.ndarray
    centrality: np.ndarray
    order: np.ndarray

    @classmethod
    def from_points(cls, points: np.ndarray, n_clusters: int, doubt_of_point: np.ndarray, rng: np.random.Generator, seed: int) -> "_ClusterLevel":
        """Spherical k-means of unit ``points`` into ``n_clusters`` (callers keep 3 points a cluster); ``doubt_of_point`` orders the clusters."""
        centroids = _spherical_centres(points, n_clusters, rng, seed)
        cluster = (points @ centroids.T).argmax(axis=1)
        centrality = np.einsum("ij,ij->i", points, centroids[cluster]) if len(points) else np.zeros(0)
        sizes = np.bincount(cluster, minlength=len(centroids))
        doubt = np.bincount(cluster, weights=doubt_of_point, minlength=len(centroids)) / np.maximum(sizes, 1)
        return cls(centroids, cluster, centrality, np.lexsort((-sizes, -doubt)))

    def candidates(self, members: np.ndarray) -> np.ndarray:
        """The most central of ``members`` (pool positions) in each cluster, clusters in visiting order."""
        by_cluster = members[np.lexsort((-self.centrality[members], self.cluster[members]))]
        first = by_cluster[np.r_[True, np.diff(self.cluster[by_cluster]) != 0]] if len(by_cluster) else by_cluster
        rank = np.empty(len(self.centroids), np.int64)
        rank[self.order] = np.arange(len(self.centroids))
        return first[np.argsort(rank[self.cluster[first]], kind="stable")]


class Explorer:
    """Proposes varied, typical images: the broad groups of a collection first, then finer groups the network is least sure about.

    Parameters
    ----------
    pool_size : int
        Images sampled from the collection to cluster.
    n_clusters : int
        Finer groups (fewer in a small collection: at least 3 images
        each). About as many as a user would page through while looking for
        a first example; on Caltech-101, 100 groups found more first
        examples than 40, 66 or 230.
    n_broad : int
        Broad groups visited first (0, or not fewer than the finer groups:
        none). On twelve Caltech-101 animals searched under made-up names,
        15 broad groups put an image of 11.7 of the animals on the first page
        where the finer groups alone reached 8.7 (mean of three seeds); on
        Caltech-101's own words the first level costs about a page of finer,
        unfamiliar groups (``results/evaluation_design_choices.md``).
    seed : int

    Attributes
    ----------
    pool_ : ndarray of int
        Sampled rows.
    levels_ : list
        The broad clustering (when there is one), then the finer one; the
        finer one does not depend on ``n_broad``.
    points_ : ndarray of shape (n_pool, d)
        The pooled rows' unit vectors.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> vectors = np.repeat(rng.normal(size=(4, 8)), 30, axis=0) + 0.01 * rng.normal(size=(120, 8))
    >>> explorer = Explorer(n_clusters=8, n_broad=4).fit(vectors)
    >>> sorted(int(row) // 30 for row in explorer.propose(4, np.zeros(0, np.int64), vectors))
    [0, 1, 2, 3]
    """

    def __init__(self, pool_size: int = 4000, n_clusters: int = 100, n_broad: int = 15, seed: int = 0):
        self.pool_size = pool_size
        self.n_clusters = n_clusters
        self.n_broad = n_broad
        self.seed = seed

    def fit(self, vectors: np.ndarray, class_probabilities: np.ndarray | None = None) -> "Explorer":
        """Cluster a sample of ``vectors`` (one row per image; may be memory-mapped).

        ``class_probabilities`` (one row per image) give the network's
        confidence in each image, its top class probability; without them
        clusters are taken largest first.
        """
        rng = np.random.default_rng(self.seed)
        self.pool_ = _seeded_pool(len(vectors), self.pool_size, rng)
        points = unit_rows(vectors[self.pool_])
        if class_probabilities is not None and len(points):
            doubt = 1.0 - read_rows(class_probabilities, self.pool_).max(axis=1).astype(np.float64)
        else:
            doubt = np.zeros(len(points))
        n_fine, n_broad = (min(n, len(points) // 3) for n in (self.n_clusters, self.n_broad))
        self.levels_ = [_ClusterLevel.from_points(points, n_fine, doubt, rng, self.seed)]
        if 0 < n_broad < n_fine:  # its own generator, so the finer groups are the same with or without it
            self.levels_.insert(0, _ClusterLevel.from_points(points, n_broad, doubt, np.random.default_rng([self.seed, 1]), self.seed))
        self.points_ = points
        return self

    def propose(self, k: int, avoid: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Rows to show, in an order that does not depend on ``k`` (a longer list starts with the shorter one).

        Level by level (broad groups, then finer ones), one image per group,
        the one nearest its centre, least familiar groups first; a group
        that holds an avoided image or one already proposed (at that level)
        is passed over, and so is an image closer to one already proposed
        than to its own group's centre (or than the median image to its
        centre). Then the finer groups passed over for an avoided image, in
        the same order; then the pooled images least like any avoided or
        proposed (farthest-point sampling); then, once the pool is used up,
        the other rows in a seeded random order.

        Parameters
        ----------
        k : int
            Rows wanted.
        avoid : ndarray of int
            Rows never to propose (judged or already shown).
        vectors : ndarray of shape (n_images, d)
            The vectors the explorer was fitted on.

        Returns
        -------
        ndarray of int
            Up to ``k`` rows, none in ``avoid``.
        """
        avoid = np.asarray(avoid, np.int64)
        available = ~np.isin(self.pool_, avoid)
        picked: list[int] = []
        members = np.flatnonzero(available)
        avoided = unit_rows(vectors[np.sort(avoid)]) if len(avoid) else np.zeros((0, self.points_.shape[1]), np.float32)
        covered = []
        for level in self.levels_:
            hit = np.zeros(len(level.centroids), bool)
            if len(avoided) and len(level.centroids):
                hit[(avoided @ level.centroids.T).argmax(axis=1)] = True
            covered.append(hit)
        # every level's groups not touched yet, then the finer groups passed over for an avoided image
        passes = list(zip(self.levels_, covered)) + [(self.levels_[-1], None)]
        if not len(members):  # every pooled row avoided: nothing to take group by group
            passes = []
        for level, hit in passes:
            # skip images closer to one already picked than to their own group's centre, or than a typical
            # image to its centre (crops of one photo, say, even if k-means split them into groups of their own)
            limit = np.minimum(level.centrality, np.median(level.centrality))
            for member in level.candidates(members):
                if len(picked) >= k:
                    break
                if hit is not None and hit[level.cluster[member]]:
                    continue
                if hit is None and member in picked:
                    continue
                if picked and float((self.points_[picked] @ self.points_[member]).max()) > limit[member]:
                    continue
                picked.append(int(member))
                for other, other_hit in zip(self.levels_, covered):
                    other_hit[other.cluster[member]] = True
        if len(picked) < k:
            rest = np.setdiff1d(members, picked)
            seen = np.vstack([avoided, self.points_[picked]])
            closeness = (self.points_[rest] @ seen.T).max(axis=1) if len(seen) else np.full(len(rest), -np.inf)
            for _ in range(min(k - len(picked), len(rest))):
                pick = int(np.argmin(closeness))
                picked.append(int(rest[pick]))
                closeness = np.maximum(closeness, self.points_[rest] @ self.points_[rest[pick]])
                closeness[pick] = np.inf
        rows = self.pool_[np.asarray(picked, np.int64)]
        if len(rows) < k and len(vectors) > len(self.pool_):
            outside = np.random.default_rng([self.seed, 2]).permutation(len(vectors))
            outside = outside[~np.isin(outside, self.pool_) & ~np.isin(outside, avoid)]
            rows = np.concatenate([rows, outside[: k - len(rows)]])
        return rows[: max(k, 0)]


class ImageGroups:
    """Small groups of look-alike images (spherical k-means), to spread a page over many of them.

    A word's prior that may be wrong (a word ImageNet does not cover) tends
    to fill a page with one look-alike class: twenty daisies for "dandelion".
    Showing the best image of each small group before the second best of any
    (:func:`lab.search.ranking.spread`) puts more distinct kinds of image on
    the first pages, so a class the prior ranks lower is met early.

    Parameters
    ----------
    group_size : int
        Images per group on average: ``n_images // group_size`` groups, at
        most a tenth of the pool (so each centre is fitted on ten images or
        more). On Caltech-101 groups of 15 and 30 found the first relevant
        image of more uncovered words than the explorer's 100 groups.
    pool_size : int
        Images sampled (seeded) to fit the centres.
    seed : int

    Attributes
    ----------
    centroids_ : ndarray of shape (n_groups, d)
    group_ : ndarray of int, shape (n_images,)
        Group of each row, -1 for rows not asked about yet (rows are
        assigned on demand, so the cost follows what pages need).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> vectors = np.repeat(rng.normal(size=(3, 8)), 20, axis=0) + 0.01 * rng.normal(size=(60, 8))
    >>> groups = ImageGroups(group_size=20).fit(vectors).predict(np.array([0, 1, 20, 40]), vectors)
    >>> bool(groups[0] == groups[1]), len({int(g) for g in groups[1:]})
    (True, 3)
    """

    def __init__(self, group_size: int = 30, pool_size: int = 4000, seed: int = 0):
        self.group_size = group_size
        self.pool_size = pool_size
        self.seed = seed

    def fit(self, vectors: np.ndarray) -> "ImageGroups":
        """Fit group centres on a seeded sample of ``vectors`` (one row per image)."""
        n = len(vectors)
        rng = np.random.default_rng(self.seed)
        points = unit_rows(vectors[_seeded_pool(n, self.pool_size, rng)])
        n_groups = min(n // max(self.group_size, 1), len(points) // 10)
        self.centroids_ = _spherical_centres(points, n_groups, rng, self.seed)
        self.group_ = np.full(n, -1, np.int64)
        return self

    def predict(self, rows: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """The group of each of ``rows`` (the nearest centre by cosine)."""
        rows = np.asarray(rows, np.int64)
        missing = np.unique(rows[self.group_[rows] < 0])
        if len(missing):
            self.group_[missing] = (unit_rows(vectors[missing]) @ self.centroids_.T).argmax(axis=1)
        return self.group_[rows]
