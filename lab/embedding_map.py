"""2-D maps of a collection's embeddings (UMAP or PCA) as a result object.

>>> emap = EmbeddingMap.compute(col, method="umap")        # doctest: +SKIP
>>> emap.plot(color_by=labels, thumbnails=40)              # doctest: +SKIP
>>> emap.cluster_members(emap.nearest_cluster(x, y))       # doctest: +SKIP
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
    """

    coordinates: np.ndarray
    paths: list
    method: str
    clusters: np.ndarray
    top_classes: list
    params: dict = field(default_factory=dict)

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
        from sklearn.cluster import KMeans
        from sklearn.decomposition import PCA

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
        k = n_clusters or max(2, min(n - 1, int(np.sqrt(n / 2))))
        clusters = KMeans(n_clusters=k, n_init=4, random_state=random_state).fit_predict(vectors)
        names = load_vocabulary().class_names
        top = [names[i] for i in np.asarray(col.class_probabilities, np.float32).argmax(axis=1)]
        return cls(np.asarray(coordinates, np.float32), list(col.paths), method, clusters, top, dict(params))

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

    def plot(self, color_by=None, thumbnails: int = 0, ax=None, title: str | None = None, max_legend: int = 12):
        """Scatter the map, coloured by ``color_by`` (labels per image) or by top ImageNet class.

        ``thumbnails`` > 0 draws that many images (spread over the map) at their positions.
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
        ax.legend(fontsize=7, markerscale=2, loc="best", ncol=2)
        ax.set_title(title or f"{self.method.upper()} map of {len(self.paths):,} images")
        ax.set_xticks([])
        ax.set_yticks([])
        return ax
