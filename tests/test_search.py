"""Keyword search, query by example, feedback and ranking on a real photo collection."""

import multiprocessing
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lab import Collection
from lab.neighbors import NeighborIndex
from lab.search import SearchConfig, SearchEngine
from lab.search.keywords import prior_scores, resolve_word
from lab.search.space import class_matrix
from lab.vocabulary import load_vocabulary
from lab.sample_images import label_of


@pytest.fixture()
def col(tmp_path, photo_collection):
    """A private copy of the session collection, so feedback does not leak between tests."""
    shutil.copytree(photo_collection.root, tmp_path / "col")
    return Collection.open(tmp_path / "col")


def labels_of(col, frame):
    return [label_of(p) for p in frame["path"]]


def test_keyword_search_finds_the_cat_first(col):
    result = col.search("cat", k=5)
    assert list(result.columns[:3]) == ["id", "path", "score"]
    assert labels_of(col, result)[0] == "cat"
    assert "cat" in result["reason"].iloc[0]
    assert result["score"].is_monotonic_decreasing
    assert result.attrs["kind"] == "imagenet"


def test_hypernym_query_finds_the_dogs(col):
    result = col.search("dogs", k=5)
    # foolbox photos 243 (bull mastiff) and 251 (dalmatian) are the only dogs
    assert set(labels_of(col, result)[:2]) == {"imagenet243", "imagenet251"}


def test_vehicle_finds_cars_and_the_motorcycle(col):
    top = labels_of(col, col.search("vehicle", k=4))
    assert {"imagenet609", "motorcycle"} <= set(top)


def test_no_evidence_says_so_instead_of_listing_storage_order(col):
    result = col.search("garfield")
    assert len(result) == 0
    assert "no evidence" in result.attrs["message"] and "teach" in result.attrs["message"]
    # a known word with few matching images lists only those
    cats = col.search("cat", k=20)
    assert len(cats) < 5 and cats.attrs["n_matches"] == len(cats)


@pytest.mark.parametrize("query", ["", "   ", "123", "!!!"])
def test_empty_or_garbage_query_is_a_clear_error(col, query):
    with pytest.raises(ValueError, match="query"):
        col.search(query)


def test_judged_relevant_comes_first_and_irrelevant_never_shows(col):
    temple = [p for p in col.paths if label_of(p) == "temple"][0]
    coffee = [p for p in col.paths if label_of(p) == "coffee"][0]
    col.judge("cat", temple, relevant=True, user="ann")
    col.judge("cat", coffee, relevant=False, user="ann")
    result = col.search("cat", k=10)
    assert result["path"].iloc[0] == temple
    assert result["votes"].iloc[0] == 1
    assert coffee not in set(result["path"])
    # net votes across users: bob disagrees, ann's vote and bob's cancel
    col.judge("cat", temple, relevant=False, user="bob")
    assert col.search("cat", k=10)["path"].iloc[0] != temple


def test_a_users_later_judgment_replaces_the_earlier(col):
    cat = [p for p in col.paths if label_of(p) == "cat"][0]
    col.judge("kitty", cat, relevant=False, user="ann")
    col.judge("kitty", cat, relevant=True, user="ann")
    votes = col.feedback.votes("kitty")
    assert votes["net"].tolist() == [1]
    assert len(col.judgments("kitty")) == 2


def test_feedback_survives_reopening_and_counts_for_everyone(col):
    flower = [p for p in col.paths if label_of(p) == "flower"][0]
    col.judge("blossom", flower, relevant=True, user="ann")
    reopened = Collection.open(col.root)
    result = reopened.search("blossom", k=3)
    assert result["path"].iloc[0] == flower
    assert "judged relevant" in result["reason"].iloc[0]
    terms = reopened.terms().set_index("term")
    assert terms.loc["blossom", "judgments"] == 1 and terms.loc["blossom", "relevant"] == 1


def test_teaching_an_unknown_word_with_an_outside_image(col, tmp_path):
    from skimage import data

    outside = tmp_path / "my_cat.png"
    Image.fromarray(data.cat()).save(outside)  # the same cat, a different file, not in the collection
    assert len(col.search("chelsea")) == 0
    col.teach("chelsea", outside)
    result = col.search("chelsea", k=3)
    assert labels_of(col, result)[0] == "cat"
    assert "learned from" in result["reason"].iloc[0]
    assert str(outside) not in col.paths and len(col) == 27  # not added


def test_learned_words_apply_to_images_added_later(tmp_path, photo_folder):
    col = Collection.open(tmp_path / "c", create=True)
    cats_first = [p for p in photo_folder.iterdir() if label_of(p) != "coffee"]
    col.add(cats_first, progress=False)
    col.teach("my mug", photo_folder / "coffee__coffee.jpg")
    col.add(photo_folder, progress=False)  # now the coffee photo itself arrives
    top = col.search("my mug", k=1)
    assert label_of(top["path"].iloc[0]) == "coffee"


def _judge_many(args):
    root, user, rows = args
    col = Collection.open(root)
    for row in rows:
        col.judge("parallel", row, relevant=row % 2 == 0, user=user)
    return len(rows)


def test_two_writer_processes_lose_no_judgment(col):
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        done = pool.map(_judge_many, [(str(col.root), "a", list(range(0, 27))), (str(col.root), "b", list(range(0, 27)))])
    assert sum(done) == 54
    judgments = col.judgments("parallel")
    assert len(judgments) == 54 and judgments.groupby("user").size().to_dict() == {"a": 27, "b": 27}


def test_similar_by_row_path_bytes_pil_and_pixels(col, photo_folder):
    cat_path = str(photo_folder / "cat__chelsea.jpg")
    cat_row = col.paths.index(cat_path)
    by_row = col.similar(cat_row, k=5)
    assert cat_row not in set(by_row["id"])  # the query itself is left out
    assert (np.diff(by_row["distance"]) >= -1e-6).all()
    by_path = col.similar(cat_path, k=5)
    assert by_path["id"].tolist() == by_row["id"].tolist()
    encoded = (photo_folder / "cat__chelsea.jpg").read_bytes()
    from_bytes = col.similar(encoded, k=5)
    # an outside copy of the cat finds the cat itself at distance ~0
    assert from_bytes["id"].iloc[0] == cat_row and from_bytes["distance"].iloc[0] < 1e-2
    with Image.open(photo_folder / "cat__chelsea.jpg") as image:
        assert col.similar(image, k=1)["id"].iloc[0] == cat_row
        assert col.similar(np.asarray(image), k=1)["id"].iloc[0] == cat_row
    assert len(col) == 27


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "manhattan"])
@pytest.mark.parametrize("layer", ["transfer", "output"])
def test_each_metric_matches_scikit_learn(col, metric, layer):
    from sklearn.metrics import pairwise_distances

    vectors = np.asarray(col.embeddings if layer == "transfer" else col.class_probabilities, np.float32)
    result = col.similar(3, k=26, metric=metric, layer=layer)
    expected = pairwise_distances(vectors[3:4], vectors, metric=metric)[0]
    np.testing.assert_allclose(result["distance"], expected[result["id"]], rtol=1e-4, atol=1e-4)
    order = [i for i in np.argsort(expected, kind="stable") if i != 3]
    np.testing.assert_allclose(np.sort(expected[order]), result["distance"], rtol=1e-4, atol=1e-4)


def test_approximate_index_recall_against_exact():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(50, 64)).astype(np.float32)
    vectors = centers[rng.integers(0, 50, 20_000)] + 0.3 * rng.normal(size=(20_000, 64)).astype(np.float32)
    queries = vectors[rng.choice(20_000, 200, replace=False)] + 0.05
    exact = NeighborIndex("cosine", algorithm="exact").fit(vectors).kneighbors(queries, 10)[1]
    approx_index = NeighborIndex("cosine", algorithm="ivf").fit(vectors)
    approx = approx_index.kneighbors(queries, 10)[1]
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert approx_index.algorithm_ == "ivf" and recall >= 0.99


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "manhattan"])
def test_hnsw_index_recall_and_exact_distances(metric):
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(50, 64)).astype(np.float32)
    vectors = centers[rng.integers(0, 50, 20_000)] + 0.3 * rng.normal(size=(20_000, 64)).astype(np.float32)
    queries = vectors[rng.choice(20_000, 200, replace=False)] + 0.05
    exact = NeighborIndex(metric, algorithm="exact").fit(vectors).kneighbors(queries, 10)[1]
    index = NeighborIndex(metric, exact_threshold=1_000).fit(vectors)  # auto: HNSW between the thresholds
    distances, approx = index.kneighbors(queries, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert index.algorithm_ == "hnsw" and recall >= 0.99
    from sklearn.metrics import pairwise_distances

    expected = pairwise_distances(queries[:5], vectors, metric=metric)
    np.testing.assert_allclose(distances[:5], np.take_along_axis(expected, approx[:5], axis=1), rtol=1e-3, atol=1e-3)


def test_bad_input_to_similar(col, tmp_path):
    with pytest.raises(FileNotFoundError):
        col.similar(tmp_path / "nope.jpg")
    with pytest.raises(IndexError):
        col.similar(10_000)
    with pytest.raises(ValueError, match="1280"):
        col.similar(np.zeros(7, np.float32))
    with pytest.raises(ValueError, match="metric"):
        col.similar(0, metric="hamming")
    with pytest.raises(ValueError, match="layer"):
        col.similar(0, layer="pool5")
    with pytest.raises(ValueError, match="cannot use"):
        col.similar(b"not an image")
    with pytest.raises(ValueError, match="not in the collection"):
        col.judge("cat", tmp_path / "elsewhere.jpg")


def test_empty_collection(tmp_path):
    empty = Collection.open(tmp_path / "empty", create=True)
    assert len(empty.search("dog")) == 0 and "empty" in empty.search("dog").attrs["message"]
    with pytest.raises(ValueError, match="empty"):
        empty.similar(np.zeros(1280, np.float32))


def test_query_by_example_never_opens_the_feedback_store(tmp_path, photo_collection):
    shutil.copytree(photo_collection.root, tmp_path / "c", ignore=shutil.ignore_patterns("feedback.sqlite*"))
    col = Collection.open(tmp_path / "c")
    assert len(col.similar(0, k=3)) == 3
    assert not (tmp_path / "c" / "feedback.sqlite").exists()
    col.search("cat")
    assert (tmp_path / "c" / "feedback.sqlite").exists()


def test_judgments_are_a_dataframe(col):
    col.judge("cat", 0, relevant=True, user="ann")
    frame = col.judgments()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["id", "term", "sha256", "path", "relevant", "user", "created"]
    assert frame["relevant"].dtype == bool


def test_large_collection_scoring_space_gives_the_same_top_result(col, photo_folder):
    """Above pca_threshold images, word models score PCA-reduced vectors: same answer here."""
    col.teach("chelsea", photo_folder / "cat__chelsea.jpg")
    full = col.search("chelsea", k=3)["path"].tolist()
    reduced = SearchConfig(pca_threshold=10, pca_dimensions=16)
    space = SearchEngine(col.embeddings, col.class_probabilities, col.images["sha256"], col.feedback, config=reduced).scoring_space()
    assert space.axes_ is not None and space.vectors_.shape == (27, 16)
    reduced_col = Collection.open(col.root, config=reduced)
    assert reduced_col.search("chelsea", k=3)["path"].iloc[0] == full[0]
    col.config = reduced  # the same, set on an open collection
    assert col.search("chelsea", k=3)["path"].iloc[0] == full[0]


def test_prior_is_the_probability_mass_on_the_words_classes(col):
    result = col.search("cat", k=1)
    row = int(result["id"].iloc[0])
    classes = resolve_word("cat", load_vocabulary()).classes
    exact = float(np.asarray(col.class_probabilities[row], np.float32)[classes].sum())
    assert abs(result["prior"].iloc[0] - exact) < 0.01  # only entries under 0.1% are dropped


def test_prior_weighs_classes_as_the_vocabulary_says(col):
    resolution = resolve_word("helicopter", load_vocabulary())
    assert not np.allclose(resolution.weights, 1.0)
    prior = prior_scores(class_matrix(col.class_probabilities), resolution)
    probabilities = np.asarray(col.class_probabilities, np.float32)[:, resolution.classes]
    probabilities[probabilities < 1e-3] = 0.0  # the sparse matrix drops entries under 0.1%
    np.testing.assert_allclose(prior, probabilities @ resolution.weights, rtol=1e-4, atol=1e-6)


def test_rejections_alone_push_down_images_like_them(col):
    """With only "not relevant" judgments, images that look like the rejected ones sink."""
    before = col.search("vehicle", k=10)
    cars = [p for p in before["path"] if label_of(p) == "imagenet609"]
    assert len(cars) == 2
    col.judge("vehicle", cars[0], relevant=False)
    after = col.search("vehicle", k=10)
    assert cars[0] not in set(after["path"])
    # the other car, never judged, lost score because it looks like the rejected one
    old = before.set_index("path").loc[cars[1], "score"]
    new = after.set_index("path").loc[cars[1], "score"]
    assert new < 0.5 * old
    motorcycle = [p for p in before["path"] if label_of(p) == "motorcycle"][0]
    assert after.set_index("path").loc[motorcycle, "score"] > 0.5 * before.set_index("path").loc[motorcycle, "score"]


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "manhattan"])
def test_compressed_index_reranks_to_exact_distances(metric, tmp_path):
    """Above compress_threshold: product-quantised lists propose, exact distances from the (memory-mapped) rows decide."""
    from sklearn.metrics import pairwise_distances

    rng = np.random.default_rng(1)
    centers = rng.normal(size=(40, 32)).astype(np.float32)
    vectors = (centers[rng.integers(0, 40, 8_000)] + 0.4 * rng.normal(size=(8_000, 32))).astype(np.float16)
    np.save(tmp_path / "v.npy", vectors)
    stored = np.load(tmp_path / "v.npy", mmap_mode="r")
    index = NeighborIndex(metric, algorithm="ivf", compress_threshold=1_000).fit(stored)
    assert index.algorithm_ == "ivf-pq"
    queries = np.asarray(stored[:50], np.float32)
    distances, rows = index.kneighbors(queries, 10)
    truth = pairwise_distances(queries, np.asarray(stored, np.float32), metric=metric)
    np.testing.assert_allclose(distances, np.take_along_axis(truth, rows, axis=1), rtol=1e-4, atol=1e-4)
    exact = np.argsort(truth, axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(rows, exact)])
    assert recall >= 0.99


def test_explore_fills_a_page_with_varied_unjudged_images(col):
    assert len(col.search("garfield")) == 0  # by default: no evidence, no rows
    page = col.search("garfield", k=8, explore=True)
    assert len(page) == 8 and len(set(page["id"])) == 8
    assert page["reason"].str.startswith("exploring").all()
    col.judge("garfield", int(page["id"].iloc[0]), relevant=False)
    again = col.search("garfield", k=8, explore=True, exclude_judged=True)
    assert int(page["id"].iloc[0]) not in set(again["id"])
    # varied: the collection's two most alike photos never share a page, even one of 20 of its 27 images
    from lab.vectors import unit_rows

    unit = unit_rows(col.embeddings)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -1.0)
    twins = set(np.unravel_index(int(similarity.argmax()), similarity.shape))
    for k in (8, 12, 20):
        shown = set(col.search("garfield", k=k, explore=True, exclude_judged=True)["id"])
        assert len(shown) == k and not twins <= shown
    # once the word has an example, exploring stops
    col.teach("garfield", 0)
    assert not col.search("garfield", k=8, explore=True)["reason"].str.startswith("exploring").any()
