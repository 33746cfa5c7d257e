"""Slower checks on real labeled photos from ../shared/datasets (skipped where that folder is absent)."""

import numpy as np
import pandas as pd
import pytest

from lab import Collection
from lab.datasets import read_labels_csv
from lab.evaluate import precision_at_k

pytestmark = pytest.mark.slow

WORDS = {"airplane": "airplanes", "motorbike": "Motorbikes", "leopard": "Leopards", "starfish": "starfish", "accordion": "accordion", "pizza": "pizza"}


@pytest.fixture(scope="module")
def caltech_sample(caltech101, tmp_path_factory):
    """12 images of each of 20 classes (the 6 query classes among them), indexed once."""
    labels = read_labels_csv(caltech101 / "labels.csv")
    rng = np.random.default_rng(0)
    others = [c for c in sorted(labels["label_name"].unique()) if c not in WORDS.values() and c != "BACKGROUND_Google"]
    classes = list(WORDS.values()) + list(rng.choice(others, 14, replace=False))
    sample = pd.concat([labels[labels["label_name"] == c].sample(12, random_state=0) for c in classes])
    col = Collection.open(tmp_path_factory.mktemp("caltech") / "sample", create=True)
    report = col.add(sample["path"].tolist(), progress=False)
    assert report.added == len(sample) and not report.failed
    return col, sample.set_index("path")["label_name"]


@pytest.mark.parametrize("word", sorted(WORDS))
def test_keyword_search_on_real_photos(caltech_sample, word):
    col, labels = caltech_sample
    result = col.search(word, k=10)
    hits = (labels.reindex(result["path"]) == WORDS[word]).to_numpy()
    assert precision_at_k(hits, 10) >= 0.9, result[["path", "reason"]]


def test_query_by_example_finds_the_same_class(caltech_sample):
    col, labels = caltech_sample
    label_of_row = labels.reindex(col.paths).to_numpy()
    precisions = []
    for row in range(0, len(col), 7):
        result = col.similar(row, k=5)
        precisions.append(np.mean(label_of_row[result["id"]] == label_of_row[row]))
    assert np.mean(precisions) >= 0.75


def test_teaching_an_unknown_word_finds_its_class(caltech_sample):
    col, labels = caltech_sample
    leopards = [p for p in col.paths if labels[p] == "Leopards"]
    col.teach("spotty", leopards[0])
    result = col.search("spotty", k=6)
    hits = [labels[p] == "Leopards" for p in result["path"] if p != leopards[0]][:5]
    assert sum(hits) >= 4
