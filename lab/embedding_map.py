"""2-D maps of a collection's embeddings (UMAP or PCA) as a result object.

>>> emap = EmbeddingMap.compute(col, method="umap")        # doctest: +SKIP
>>> emap.plot(color_by=labels, thumbnails=40)              # doctest: +SKIP
>>> emap.cluster_members(emap.nearest_cluster(x, y))       # doctest: +SKIP
>>> emap.plot(names=True)          # cluster names at their centres, a few thumbnails each  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .vectors import unit_rows

__all__ = ["EmbeddingMap"]


@dataclass
class EmbeddingMap:
    """Coordinates of every image on a 2-D map, with the method that made them.

    Attributes
    ----------
    coordinates : ndarray (n, 2)
    paths : list of str
    method : str
        "umap" or "pca".
    clusters : ndarray (n,) of int
        k-means clusters of the embeddings (not of the 2-D map), for looking inside.
    top_classes : list of str
        Each image's most probable ImageNet class, for colouring unlabeled collections.
    names : DataFrame, optional
        The named clusters (``Collection.clusters``): cluster, size, name, confidence, examples, ...
    """

    coordinates: np.ndarray
    paths: list
    method: str
    clusters: np.ndarray
    top_classes: list
    params: dict = field(default_factory=dict)
    names: pd.DataFrame | None = None

    @classmethod
    def compute(cls, col, method: str = "umap", n_clusters: int | None = None, random_state: int = 0, **params) -> "EmbeddingMap":
        """Project the collection's embeddings to 2-D.

        Parameters
        ----------
        col : Collection
        method : {"umap", "pca"}
        n_clusters : int, optional
            k-means clusters; default about sqrt(n / 2).
        **params
            Passed to ``umap.UMAP`` (e.g. ``n_neighbors``, ``min_dist``).
        """
        from sklearn.decomposition import PCA

        from .clusters import ClusterNamer, default_n_clusters, with_learned_words
        from .vocabulary import load_vocabulary

        n = len(col)
        if n < 3:
            raise ValueError("a map needs at least 3 images")
        vectors = unit_rows(col.embeddings)
        if method == "pca":
            coordinates = PCA(n_components=2, random_state=random_state).fit_transform(vectors)
        elif method == "umap":
            import umap

            settings = {"n_neighbors": min(15, n - 1), "min_dist": 0.1, "metric": "cosine", "random_state": random_state}
            settings.update(params)
            reduced = PCA(n_components=min(50, n - 1, vectors.shape[1]), random_state=random_state).fit_transform(vectors)
            coordinates = umap.UMAP(n_components=2, init="random" if n < 50 else "spectral", **settings).fit_transform(reduced)
        else:
            raise ValueError(f"method must be 'umap' or 'pca', got {method!r}")
        namer = ClusterNamer(n_clusters or default_n_clusters(n), n_examples=12, random_state=random_state).fit(vectors, col.class_probabilities)
        names = load_vocabulary().class_names
        top = [names[i] for i in np.asarray(col.class_probabilities, np.float32).argmax(axis=1)]
        cluster_names = with_learned_words(namer.table_, namer.labels_, col)
        return cls(np.asarray(coordinates, np.float32), list(col.paths), method, namer.labels_, top, dict(params), cluster_names)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"path": self.paths, "x": self.coordinates[:, 0], "y": self.coordinates[:, 1], "cluster": self.clusters, "top_class": self.top_classes})

    def cluster_members(self, cluster: int) -> list[str]:
        """Paths of the images in one k-means cluster."""
        return [p for p, c in zip(self.paths, self.clusters) if c == cluster]

    def cluster_summary(self) -> pd.DataFrame:
        """Per cluster: size and its most common top classes."""
        frame = self.to_frame()
        return (
            frame.groupby("cluster")
            .agg(size=("path", "size"), common_classes=("top_class", lambda s: ", ".join(s.value_counts().index[:3])))
            .sort_values("size", ascending=False)
        )

    def plot(
        self,
        color_by=None,
        thumbnails: int = 0,
        ax=None,
        title: str | None = None,
        max_legend: int = 12,
        names: bool = False,
        thumbnails_per_cluster: int = 3,
        max_names: int = 30,
    ):
        """Scatter the map, coloured by ``color_by`` (labels per image) or by top ImageNet class.

        ``thumbnails`` > 0 draws that many images (spread over the map) at their positions.
        ``names`` writes each cluster's name at its centre (of the ``max_names``
        largest clusters, leaving out a name that would cover a larger
        cluster's) with up to ``thumbnails_per_cluster`` of its most typical
        images around it, each joined to its point by a line; no name or
        thumbnail overlaps another.
        """
        import matplotlib.pyplot as plt
        from matplotlib.offsetbox import AnnotationBbox, OffsetImage

        from .thumbnails import thumbnail

        if ax is None:
            _, ax = plt.subplots(figsize=(9, 7))
        colours = pd.Series(list(color_by) if color_by is not None else self.top_classes, dtype="object").fillna("?")
        counts = colours.value_counts()
        keep = set(counts.index[:max_legend])
        groups = colours.where(colours.isin(keep), "other")
        palette = plt.get_cmap("tab20")
        for i, name in enumerate([*counts.index[:max_legend], "other"]):
            mask = (groups == name).to_numpy()
            if mask.any():
                ax.scatter(*self.coordinates[mask].T, s=8, color="lightgrey" if name == "other" else palette(i % 20), label=str(name), alpha=0.8)
        if thumbnails:
            from io import BytesIO

            from PIL import Image

            rng = np.random.default_rng(0)
            for i in rng.choice(len(self.paths), size=min(thumbnails, len(self.paths)), replace=False):
                image = np.asarray(Image.open(BytesIO(thumbnail(self.paths[i], 64))))
                ax.add_artist(AnnotationBbox(OffsetImage(image, zoom=0.45), self.coordinates[i], frameon=False))
        if names and self.names is not None:
            self._draw_names(ax, thumbnails_per_cluster, max_names)
        if names and self.names is not None:  # thumbnails fill the map: the legend goes beside it
            ax.legend(fontsize=7, markerscale=2, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
        else:
            ax.legend(fontsize=7, markerscale=2, loc="best", ncol=2)
        ax.set_title(title or f"{self.method.upper()} map of {len(self.paths):,} images")
        ax.set_xticks([])
        ax.set_yticks([])
        return ax

    def cluster_centres(self) -> np.ndarray:
        """Median map position of each cluster's images, (k, 2), by cluster number."""
        k = int(self.clusters.max()) + 1
        return np.stack([np.median(self.coordinates[self.clusters == c], axis=0) for c in range(k)])

    def _draw_names(self, ax, per_cluster: int, max_names: int) -> None:
        """Names at cluster centres (a name that would cover a larger cluster's is left out), then thumbnails around each name."""
        from io import BytesIO

        from matplotlib.offsetbox import AnnotationBbox, OffsetImage
        from PIL import Image

        from .panel import thumbnail

        centres = self.cluster_centres()
        to_axes = _AxesFraction(self.coordinates)
        placed, drawn = [], []
        for cluster, name, examples in self.names.head(max_names)[["cluster", "name", "examples"]].itertuples(index=False):
            box = to_axes.box(centres[cluster], 0.012 * len(str(name)) + 0.02, 0.035)
            if not any(_overlap(box, other) for other in placed):
                placed.append(box)
                drawn.append((cluster, str(name), list(examples), box))
        for cluster, name, _, _ in drawn:
            ax.text(*centres[cluster], name, ha="center", va="center", fontsize=8, weight="bold", zorder=6, bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.85, "lw": 0})
        for cluster, name, examples, box in drawn:
            slots = iter(_slots_around(box))
            for row in examples[: per_cluster]:
                for centre in slots:
                    candidate = (centre[0] - THUMB_FRACTION / 2, centre[1] - THUMB_FRACTION / 2, centre[0] + THUMB_FRACTION / 2, centre[1] + THUMB_FRACTION / 2)
                    inside = candidate[0] >= 0 and candidate[1] >= 0 and candidate[2] <= 1 and candidate[3] <= 1
                    if inside and not any(_overlap(candidate, other) for other in placed):
                        placed.append(candidate)
                        image = np.asarray(Image.open(BytesIO(thumbnail(self.paths[row], 64))))
                        ax.add_artist(
                            AnnotationBbox(
                                OffsetImage(image, zoom=0.45), self.coordinates[row], xybox=to_axes.point(centre), boxcoords="data",
                                frameon=True, pad=0.1, zorder=5, arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.5},
                            )
                        )
                        break
        self.drawn_names_ = [(cluster, name) for cluster, name, _, _ in drawn]
        self.placed_boxes_ = placed


def _slots_around(box) -> list[tuple[float, float]]:
    """Thumbnail centres around a name's box: beside it, above and below, then the corners, then one ring further."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    gap = THUMB_FRACTION / 2 + 0.005
    slots = []
    for ring in (0, 1):
        dx, dy = (x1 - x0) / 2 + gap + ring * THUMB_FRACTION, (y1 - y0) / 2 + gap + ring * THUMB_FRACTION
        slots += [(cx + dx, cy), (cx - dx, cy), (cx, cy + dy), (cx, cy - dy), (cx + dx, cy + dy), (cx - dx, cy + dy), (cx + dx, cy - dy), (cx - dx, cy - dy)]
    return slots


# a 64-pixel thumbnail at zoom 0.45 on a 9-inch map, as a share of the axes (with a margin)
THUMB_FRACTION = 0.06


class _AxesFraction:
    """Map coordinates -> shares of the axes (0..1), for overlap tests independent of the figure size."""

    def __init__(self, coordinates: np.ndarray):
        self.low = coordinates.min(axis=0)
        self.span = np.maximum(coordinates.max(axis=0) - self.low, 1e-9)

    def point(self, fraction) -> np.ndarray:
        """Shares of the axes back to map coordinates."""
        return self.low + np.asarray(fraction, float) * self.span

    def box(self, point, width: float, height: float) -> tuple[float, float, float, float]:
        x, y = (np.asarray(point, float) - self.low) / self.span
        return (x - width / 2, y - height / 2, x + width / 2, y + height / 2)


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
