"""Measure named clusters on a labeled collection: purity, and whether names fit the classes.

    python scripts/evaluate_clusters.py --collection PATH --images FOLDER --name caltech101

Clusters and names come from ``lab.clusters`` exactly as ``Collection.clusters``
makes them (no labels involved); the folder's labels are used only to score.
A cluster's *majority class* is its most frequent label; its name *fits* when
the named WordNet synset is that class's own synset or one of its ancestors
(Caltech folder names go through ``lab.experiments.caltech_query_words`` to the
word a user would type). Writes ``results/clusters_<name>.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab import Collection  # noqa: E402
from lab.clusters import GENERIC, ClassTaxonomy, ClusterNamer, cluster_purity, default_n_clusters  # noqa: E402
from lab.datasets import folder_labels  # noqa: E402
from lab.experiments import caltech_query_words  # noqa: E402


def label_synsets(label_names, vocabulary) -> dict[str, list[str]]:
    """Label -> WordNet synsets of the word a user would type for it (none for clutter classes)."""
    word_of = {name: word for word, names in caltech_query_words(label_names).items() for name in names if name in set(label_names)}
    return {name: vocabulary.synsets(word_of[name]) if name in word_of else [] for name in set(label_names)}


def score(namer: ClusterNamer, probabilities: np.ndarray, taxonomy: ClassTaxonomy, labels: np.ndarray, synsets: dict, min_mass: float) -> pd.DataFrame:
    """One row per cluster: size, name, confidence, majority class, purity, whether the name fits."""
    k = len(namer.centres_)
    means = np.stack([probabilities[namer.labels_ == c].mean(axis=0) for c in range(k)])
    names = taxonomy.name(means, min_mass)
    vocab = taxonomy.vocabulary
    rows = []
    for c in range(k):
        counts = pd.Series(labels[namer.labels_ == c]).value_counts()
        majority = counts.index[0]
        below = {a for s in synsets[majority] for a in vocab.ancestors(s)}
        rows.append(
            {
                "cluster": c,
                "size": int(counts.sum()),
                "name": names.loc[c, "name"],
                "confidence": names.loc[c, "confidence"],
                "majority": majority,
                "purity": counts.iloc[0] / counts.sum(),
                "scorable": bool(below),
                "fits": names.loc[c, "wnid"] in below,
                "finer": bool(set(synsets[majority]) & (vocab.ancestors(names.loc[c, "wnid"]) - {names.loc[c, "wnid"]})),
                "generic": names.loc[c, "n_classes"] >= GENERIC,
            }
        )
    table = pd.DataFrame(rows).sort_values("size", ascending=False)
    table.attrs["purity"] = cluster_purity(namer.labels_, labels)
    return table


def summary(table: pd.DataFrame) -> dict:
    scorable = table[table["scorable"]]
    return {
        "clusters": len(table),
        "purity": table.attrs["purity"],
        "names fit": scorable["fits"].mean(),
        "scorable clusters": len(scorable),
        "names fit (images)": (scorable["fits"] * scorable["size"]).sum() / scorable["size"].sum(),
        "specific names that fit": (scorable["fits"] & ~scorable["generic"]).mean(),
        "names fit or finer": (scorable["fits"] | scorable["finer"]).mean(),
        "generic names": table["generic"].mean(),
        "mean confidence": table["confidence"].mean(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", required=True)
    parser.add_argument("--images", required=True, help="the image folder (its labels.csv scores the clusters)")
    parser.add_argument("--name", required=True, help="results/clusters_<name>.md")
    args = parser.parse_args()
    command = "python scripts/evaluate_clusters.py " + " ".join(sys.argv[1:])
    col = Collection.open(args.collection)
    labels = folder_labels(args.images)
    if labels is None:
        raise SystemExit(f"{args.images} has no labels (labels.csv or <label>__name files): nothing to score against")
    labels = labels.reindex(col.paths)
    if labels.isna().any():
        raise SystemExit(f"{int(labels.isna().sum())} collection images have no label in {args.images}")
    labels = labels.to_numpy()
    taxonomy = ClassTaxonomy()
    synsets = label_synsets(labels, taxonomy.vocabulary)
    n_classes = len(set(labels))
    probabilities = np.asarray(col.class_probabilities, np.float32)
    started = time.time()
    tables, rows = {}, []
    for n in (default_n_clusters(len(col)), n_classes):
        namer = ClusterNamer(n).fit(col.embeddings, col.class_probabilities, taxonomy)
        for min_mass in (0.5, 0.6, 0.7):
            table = score(namer, probabilities, taxonomy, labels, synsets, min_mass)
            tables[n, min_mass] = table
            rows.append({"n clusters": n, "min mass": min_mass, **summary(table)})
    results = pd.DataFrame(rows)
    default = tables[default_n_clusters(len(col)), 0.6]
    lines = [
        f"# Named clusters on {args.name}",
        "",
        f"Command: `{command}` ({len(col):,} images, {n_classes} classes, model {col.model_name}; took {time.time() - started:.0f} s).",
        "",
        "Clusters: k-means on the embeddings (`lab.clusters.ClusterNamer`), with the default number of clusters "
        f"(about sqrt(n / 2) = {default_n_clusters(len(col))}) and with one per class ({n_classes}). "
        "Names: the most specific WordNet synset holding at least `min mass` of the cluster's mean ImageNet class "
        "probability (0.6 is the default). Labels score only: `purity` = share of images in their cluster's majority class "
        "(weighted by size); `names fit` = share of clusters whose name is the majority class's synset or one of its "
        "WordNet ancestors, over the clusters whose majority class has a WordNet synset (`scorable`; "
        "clutter classes such as BACKGROUND_Google do not); `(images)` weights that by cluster size; "
        f"`generic names` = share of names above {GENERIC} of the 1000 ImageNet classes (\"whole\", \"artifact\", \"living thing\"), "
        "which fit almost anything; `specific names that fit` leaves those out; `names fit or finer` also counts a name "
        "below the class (\"airliner\" for airplanes). A label word with several senses fits any of them (Caltech's "
        "\"Faces\" -> \"face\" has artifact senses too, so \"artifact\" fits it).",
        "",
        results.to_markdown(index=False, floatfmt=".3f"),
        "",
        f"## Every cluster, default settings ({default_n_clusters(len(col))} clusters, min mass 0.6)",
        "",
        default.drop(columns=["cluster"]).to_markdown(index=False, floatfmt=".2f"),
        "",
    ]
    out = ROOT / "results" / f"clusters_{args.name}.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines[:8]))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
