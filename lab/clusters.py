"""Named clusters of an unlabeled collection.

k-means groups the embeddings; each group is named twice over:

* from the network: the group's mean ImageNet class probabilities are summed
  up WordNet's is-a tree (``lab/data/vocabulary.json.gz``), and the name is
  the most specific synset that holds at least ``min_mass`` of them
  (a group of dalmatians and beagles is "dog"; of cars and buses, "motor vehicle");
* from learned words: a word with feedback names the group when most of the
  images judged relevant for it fall in the group.

>>> table = col.clusters()                                   # doctest: +SKIP
>>> table[["cluster", "size", "name", "confidence"]]          # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .term_model import unit_rows

__all__ = ["GENERIC", "ClassTaxonomy", "ClusterNamer", "cluster_purity", "default_n_clusters", "learned_words"]


# a name above this many of the 1000 ImageNet classes ("whole", "artifact", "living thing") says little
GENERIC = 300


def default_n_clusters(n_images: int) -> int:
    """About sqrt(n / 2) clusters, at least 2 and fewer than the images."""
    return max(2, min(n_images - 1, int(np.sqrt(n_images / 2))))


def cluster_purity(clusters, labels) -> float:
    """Share of images whose label is their cluster's most common label (labels only score, never cluster)."""
    frame = pd.DataFrame({"cluster": np.asarray(clusters), "label": np.asarray(labels, dtype=object)}).dropna()
    if frame.empty:
        return float("nan")
    return float(frame.groupby("cluster")["label"].agg(lambda s: s.value_counts().iloc[0]).sum() / len(frame))


class ClassTaxonomy:
    """The WordNet synsets above the 1000 ImageNet classes, as a node x class membership matrix.

    Parameters
    ----------
    vocabulary : Vocabulary, optional
        Default: :func:`lab.vocabulary.load_vocabulary`.
    """

    def __init__(self, vocabulary=None):
        from .vocabulary import load_vocabulary

        self.vocabulary = vocabulary or load_vocabulary()
        if not self.vocabulary.hypernyms:
            raise ValueError("the vocabulary file has no is-a tree; rebuild it with scripts/build_vocabulary.py")
        below: dict[str, list[int]] = {}
        for index, wnid in enumerate(self.vocabulary.class_wnids):
            for node in self.vocabulary.ancestors(wnid):
                below.setdefault(node, []).append(index)
        self.wnids = sorted(below)
        self.names = [self.vocabulary.synset_name(w) for w in self.wnids]
        membership = np.zeros((len(self.wnids), len(self.vocabulary.class_wnids)), np.float32)
        for row, wnid in enumerate(self.wnids):
            membership[row, below[wnid]] = 1.0
        self.membership = membership
        self.n_classes_below = membership.sum(axis=1).astype(int)

    def mass(self, probabilities: np.ndarray) -> np.ndarray:
        """Probability mass under every node: (k, 1000) class probabilities -> (k, n_nodes)."""
        return np.asarray(probabilities, np.float32) @ self.membership.T

    def name(self, probabilities: np.ndarray, min_mass: float = 0.6) -> pd.DataFrame:
        """The most specific node holding at least ``min_mass`` of each row's probability.

        Returns
        -------
        DataFrame
            One row per input row: ``wnid``, ``name``, ``confidence`` (the
            mass under the chosen node) and ``n_classes`` (ImageNet classes
            below it); ties in specificity go to the larger mass.
        """
        mass = self.mass(np.atleast_2d(probabilities))
        rows = []
        for masses in mass:
            enough = np.flatnonzero(masses >= min_mass)
            if not len(enough):  # probabilities that do not sum to 1: take the root-most node
                enough = np.array([int(np.argmax(masses))])
            best = min(enough, key=lambda node: (self.n_classes_below[node], -masses[node]))
            rows.append({"wnid": self.wnids[best], "name": self.names[best], "confidence": float(masses[best]), "n_classes": int(self.n_classes_below[best])})
        return pd.DataFrame(rows)


class ClusterNamer:
    """k-means clusters of embeddings, each named from the network's class probabilities.

    Parameters
    ----------
    n_clusters : int, optional
        Default :func:`default_n_clusters`.
    min_mass : float
        Share of a cluster's class probability its name must cover.
    n_examples : int
        Example rows kept per cluster, the most typical first (nearest the centre).
    random_state : int

    Attributes
    ----------
    labels_ : ndarray (n,)
        Cluster of each row.
    centres_ : ndarray (k, d)
        Unit-length cluster centres in embedding space.
    table_ : DataFrame
        One row per cluster, largest first: cluster, size, name, confidence,
        wnid, n_classes (ImageNet classes below the name; at least
        :data:`GENERIC` means a name as broad as "artifact"), examples (row ids).
    """

    def __init__(self, n_clusters: int | None = None, min_mass: float = 0.6, n_examples: int = 6, random_state: int = 0):
        self.n_clusters = n_clusters
        self.min_mass = min_mass
        self.n_examples = n_examples
        self.random_state = random_state

    def fit(self, embeddings: np.ndarray, class_probabilities: np.ndarray, taxonomy: ClassTaxonomy | None = None) -> "ClusterNamer":
        from sklearn.cluster import KMeans

        vectors = unit_rows(np.asarray(embeddings, np.float32))
        n = len(vectors)
        if n < 3:
            raise ValueError(f"clusters need at least 3 images, got {n}")
        if len(class_probabilities) != n:
            raise ValueError(f"{n} embeddings but {len(class_probabilities)} rows of class probabilities")
        k = self.n_clusters or default_n_clusters(n)
        if not 2 <= k < n:
            raise ValueError(f"n_clusters must be between 2 and {n - 1} for {n} images, got {k}")
        kmeans = KMeans(n_clusters=k, n_init=4, random_state=self.random_state).fit(vectors)
        self.labels_ = kmeans.labels_.astype(int)
        self.centres_ = unit_rows(kmeans.cluster_centers_.astype(np.float32))
        probabilities = np.asarray(class_probabilities, np.float32)
        means = np.stack([probabilities[self.labels_ == c].mean(axis=0) for c in range(k)])
        names = (taxonomy or ClassTaxonomy()).name(means, self.min_mass)
        similarity = vectors @ self.centres_.T
        examples = []
        for c in range(k):
            members = np.flatnonzero(self.labels_ == c)
            examples.append(members[np.argsort(-similarity[members, c])][: self.n_examples].tolist())
        table = pd.DataFrame(
            {"cluster": np.arange(k), "size": np.bincount(self.labels_, minlength=k), "name": names["name"], "confidence": names["confidence"], "wnid": names["wnid"], "n_classes": names["n_classes"], "examples": examples}
        )
        self.table_ = table.sort_values(["size", "cluster"], ascending=[False, True]).reset_index(drop=True)
        return self


def learned_words(labels: np.ndarray, judgments: pd.DataFrame, row_of_sha: dict, min_share: float = 0.5) -> pd.DataFrame:
    """Words with feedback that name a cluster: most of their relevant images fall in it.

    Parameters
    ----------
    labels : ndarray (n,)
        Cluster of each collection row.
    judgments : DataFrame
        ``Collection.judgments()``: term, sha256, user, relevant (oldest first).
    row_of_sha : dict
        sha256 -> collection row.
    min_share : float
        A word claims a cluster holding more than this share of its relevant images.

    Returns
    -------
    DataFrame
        cluster, word, n_relevant (the word's relevant images in the cluster), share.
    """
    columns = ["cluster", "word", "n_relevant", "share"]
    if judgments is None or judgments.empty:
        return pd.DataFrame(columns=columns)
    latest = judgments.drop_duplicates(["term", "sha256", "user"], keep="last")
    net = latest.assign(vote=np.where(latest["relevant"], 1, -1)).groupby(["term", "sha256"])["vote"].sum()
    rows = []
    for term, votes in net[net > 0].groupby(level="term"):
        members = [row_of_sha[sha] for sha in votes.index.get_level_values("sha256") if sha in row_of_sha]
        if not members:
            continue
        counts = np.bincount(labels[members], minlength=int(labels.max()) + 1)
        cluster = int(np.argmax(counts))
        share = counts[cluster] / len(members)
        if share > min_share:
            rows.append({"cluster": cluster, "word": term, "n_relevant": int(counts[cluster]), "share": float(share)})
    return pd.DataFrame(rows, columns=columns).sort_values(["cluster", "n_relevant"], ascending=[True, False]).reset_index(drop=True)


def name_clusters(col, n: int | None = None, min_mass: float = 0.6, n_examples: int = 6, random_state: int = 0) -> pd.DataFrame:
    """Named clusters of a collection (see :meth:`lab.collection.Collection.clusters`)."""
    namer = ClusterNamer(n, min_mass, n_examples, random_state).fit(col.embeddings, col.class_probabilities)
    return with_learned_words(namer.table_, namer.labels_, col)


def with_learned_words(table: pd.DataFrame, labels: np.ndarray, col) -> pd.DataFrame:
    """Add the collection's learned words to a cluster table.

    ``words`` lists the words that claim each cluster (most relevant images
    first); the first of them becomes the ``name`` (``source`` "learned word",
    ``confidence`` the share of the word's relevant images in the cluster);
    otherwise the WordNet name stays (``source`` "wordnet"). ``wordnet_name``
    keeps the network's name either way.
    """
    row_of_sha = {sha: row for row, sha in enumerate(col.images["sha256"])}
    words = learned_words(labels, col.judgments(), row_of_sha)
    by_cluster = words.groupby("cluster")["word"].apply(list).to_dict()
    table = table.rename(columns={"name": "wordnet_name"}).copy()
    table["words"] = [by_cluster.get(c, []) for c in table["cluster"]]
    table.insert(2, "name", [w[0] if w else n for w, n in zip(table["words"], table["wordnet_name"])])
    table.insert(3, "source", ["learned word" if w else "wordnet" for w in table["words"]])
    share = words.drop_duplicates("cluster").set_index("cluster")["share"]
    learned = table["source"] == "learned word"
    table.loc[learned, "confidence"] = table.loc[learned, "cluster"].map(share).to_numpy(float)
    return table[["cluster", "size", "name", "source", "confidence", "wordnet_name", "wnid", "n_classes", "examples", "words"]]
