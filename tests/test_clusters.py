"""Named clusters: WordNet names from class probabilities, learned words, the named map."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lab.clusters import ClassTaxonomy, ClusterNamer, learned_words


@pytest.fixture(scope="module")
def taxonomy():
    return ClassTaxonomy()


def classes_under(taxonomy, word):
    """ImageNet class indices below a word's first WordNet sense."""
    vocab = taxonomy.vocabulary
    top = vocab.synsets(word)[0]
    return [i for i, wnid in enumerate(vocab.class_wnids) if top in vocab.ancestors(wnid)]


def spread(taxonomy, *words):
    """Equal probability for each word, shared evenly among the classes below it."""
    p = np.zeros(1000, np.float32)
    for word in words:
        ids = classes_under(taxonomy, word)
        p[ids] += 1 / len(ids) / len(words)
    return p


def test_names_are_the_most_specific_synset_holding_most_of_the_mass(taxonomy):
    mixes = [("dog",), ("dog", "wolf"), ("car", "bus"), ("airliner", "bicycle"), ("tabby", "persian cat"), ("tabby",)]
    names = taxonomy.name(np.stack([spread(taxonomy, *words) for words in mixes]))
    # all 118 breeds evenly: "dog", not "hunting dog" (63 of them, 53% of the mass)
    assert names["name"].tolist() == ["dog", "canine", "motor vehicle", "vehicle", "domestic cat", "tabby"]
    assert np.allclose(names["confidence"], 1.0, atol=1e-5)
    # mass below the threshold goes up the tree: 70% tabby and 30% dalmatian is a tabby at 0.6, a domestic animal at 0.8
    mixed = np.zeros(1000, np.float32)
    mixed[classes_under(taxonomy, "tabby")] = 0.7
    mixed[classes_under(taxonomy, "dalmatian")] = 0.3
    assert taxonomy.name(mixed, min_mass=0.6)["name"].item() == "tabby"
    assert taxonomy.name(mixed, min_mass=0.8)["name"].item() == "domestic animal"


def test_learned_words_claim_the_cluster_holding_most_of_their_relevant_images():
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    judgments = pd.DataFrame(
        {
            "term": ["menorah"] * 4 + ["blob"] * 4,
            "sha256": ["a", "b", "c", "d", "a", "d", "g", "h"],
            "user": ["u"] * 8,
            "relevant": [True, True, True, False, True, True, True, True],
        }
    )
    row_of_sha = dict(zip("abcdefgh", range(8)))
    words = learned_words(labels, judgments, row_of_sha)
    # menorah: 3 relevant images, all in cluster 0; blob: spread over three clusters, claims none
    assert words[["cluster", "word", "n_relevant", "share"]].values.tolist() == [[0, "menorah", 3, 1.0]]
    # a user who changes their mind: the latest judgment counts
    flipped = pd.concat([judgments, pd.DataFrame({"term": ["menorah"] * 3, "sha256": ["a", "b", "c"], "user": ["u"] * 3, "relevant": [False] * 3})])
    assert learned_words(labels, flipped, row_of_sha).empty


def test_bad_cluster_counts_are_refused_clearly():
    vectors = np.random.default_rng(0).normal(size=(10, 8)).astype(np.float32)
    probabilities = np.full((10, 1000), 1e-3, np.float32)
    with pytest.raises(ValueError, match="between 2 and 9"):
        ClusterNamer(n_clusters=10).fit(vectors, probabilities)
    with pytest.raises(ValueError, match="10 embeddings but 9 rows"):
        ClusterNamer(n_clusters=3).fit(vectors, probabilities[:9])


@pytest.mark.slow
def test_clusters_of_real_photos_are_pure_and_named_after_what_they_show(grouped):
    col, groups = grouped
    table = col.clusters(n=27)
    assert list(table.columns[:5]) == ["cluster", "size", "name", "source", "confidence"]
    assert table["size"].sum() == len(col) and table["size"].is_monotonic_decreasing
    for cluster, examples in zip(table["cluster"], table["examples"]):
        assert examples and all(0 <= r < len(col) for r in examples)
    namer = ClusterNamer(27).fit(col.embeddings, col.class_probabilities)
    labels = namer.labels_
    purity = sum(np.bincount(groups[labels == c]).max() for c in range(27)) / len(col)
    assert purity >= 0.8, purity
    # the cluster holding the packaged cat photo is named by a synset above or below "cat"
    vocab = ClassTaxonomy().vocabulary
    cat = next(r for r, p in enumerate(col.paths) if p.endswith("source-cat__chelsea.jpg"))
    name = table.set_index("cluster").loc[labels[cat], "wnid"]
    cat_sense = vocab.synsets("cat")[0]
    tabby = vocab.class_wnids[int(np.argmax(col.class_probabilities[cat]))]
    assert name in vocab.ancestors(tabby) and cat_sense in vocab.ancestors(tabby), (name, tabby)
    assert cat_sense in vocab.ancestors(name) or name in vocab.ancestors(cat_sense), vocab.synset_name(name)


@pytest.mark.slow
def test_a_learned_word_names_its_cluster(grouped, tmp_path):
    import shutil

    from lab import Collection

    source, groups = grouped
    shutil.copytree(source.root, tmp_path / "col", ignore=shutil.ignore_patterns("feedback.sqlite*"))
    col = Collection.open(tmp_path / "col")
    before = col.clusters(n=27)
    rocket = next(r for r, p in enumerate(col.paths) if p.endswith("source-rocket__rocket.jpg"))
    for row in np.flatnonzero(groups == groups[rocket]):
        col.judge("spaceship thing", int(row), True, user="ann")
    after = col.clusters(n=27).set_index("cluster")
    cluster = ClusterNamer(27).fit(col.embeddings, col.class_probabilities).labels_[rocket]
    assert after.loc[cluster, "name"] == "spaceship thing" and after.loc[cluster, "source"] == "learned word"
    assert after.loc[cluster, "wordnet_name"] == before.set_index("cluster").loc[cluster, "name"]
    assert (after.drop(index=cluster)["source"] == "wordnet").all()


@pytest.mark.slow
def test_the_map_writes_names_at_cluster_centres_with_thumbnails_that_do_not_overlap(grouped):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lab.embedding_map import EmbeddingMap, _overlap

    col, _ = grouped
    emap = EmbeddingMap.compute(col, method="pca", n_clusters=8)
    fig, ax = plt.subplots()
    emap.plot(ax=ax, names=True, thumbnails_per_cluster=3)
    centres = emap.cluster_centres()
    drawn = dict(emap.drawn_names_)
    assert len(drawn) >= 4 and set(drawn.values()) <= set(emap.names["name"])
    assert sorted((t.get_text(), tuple(np.round(t.get_position(), 4))) for t in ax.texts) == sorted((name, tuple(np.round(centres[c], 4))) for c, name in drawn.items())
    boxes = emap.placed_boxes_
    assert len(drawn) <= len(boxes) - len(drawn) <= 3 * len(drawn)  # at least one thumbnail per name, at most three
    assert not any(_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    plt.close(fig)
