"""What keeps a large collection inside a small memory, on synthetic arrays (seconds, no TensorFlow).

The measured curve at 1M and 3M rows is ``results/bench_search_scaling.md``
(``scripts/bench_search.py``); these tests check the mechanisms it rests on.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lab.benchmarking import memory_mb
from lab.search.keywords import KeywordScorer, KeywordScores
from lab.search.ranking import filled_page
from lab.search.space import ScoringSpace, class_matrix
from lab.vectors import read_rows, row_blocks
from lab.vocabulary import Resolution


def _file_mb() -> float:
    value = memory_mb().get("RssFile")
    if value is None:
        pytest.skip("no /proc/self/status RssFile on this system")
    return value


def test_a_pass_over_a_memory_map_does_not_stay_resident(tmp_path):
    rows = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.float16, shape=(80_000, 1280))  # 205 MB
    rows[:] = 1.0
    rows.flush()
    del rows
    stored = np.load(tmp_path / "big.npy", mmap_mode="r")
    before = _file_mb()
    total = sum(float(block.sum()) for _, block in row_blocks(stored, 10_000))
    after_blocks = _file_mb()
    read_rows(stored, np.arange(0, 80_000, 7))  # a gather touching every page
    after_gather = _file_mb()
    plain = float(np.asarray(stored, np.float32).sum())  # the same pass without releasing: the whole file stays
    after_plain = _file_mb()
    assert total == plain == 80_000 * 1280
    assert after_blocks - before < 40 and after_gather - before < 40
    assert after_plain - before > 150


def test_the_class_matrix_keeps_every_entry_over_the_floor_in_float16():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.full(1000, 0.05), size=2_345).astype(np.float16)
    matrix = class_matrix(probabilities, floor=1e-3, block_size=1_000)  # blocks that do not divide the rows
    assert matrix.format == "csc" and matrix.dtype == np.float16 and matrix.indices.dtype == np.int32
    assert matrix.has_sorted_indices
    dense = np.zeros(probabilities.shape, np.float32)
    for column in range(1000):
        span = slice(matrix.indptr[column], matrix.indptr[column + 1])
        dense[matrix.indices[span], column] = matrix.data[span]
    expected = probabilities.astype(np.float32)
    expected[expected < 1e-3] = 0.0
    np.testing.assert_array_equal(dense, expected)


def test_the_scoring_space_keeps_the_principal_axes():
    rng = np.random.default_rng(1)
    embeddings = (rng.normal(size=(3_000, 64)) * np.linspace(3, 0.1, 64)).astype(np.float16)
    space = ScoringSpace(pca_threshold=100, pca_dimensions=8, sample_size=3_000, block_size=700).fit(embeddings)
    unit = embeddings.astype(np.float32) / np.linalg.norm(embeddings.astype(np.float32), axis=1, keepdims=True)
    _, _, vt = np.linalg.svd(unit - unit.mean(axis=0), full_matrices=False)
    # the same 8-dimensional subspace as the SVD's (axes may differ in sign)
    np.testing.assert_allclose(np.abs(vt[:8] @ space.axes_), np.eye(8), atol=1e-3)
    np.testing.assert_allclose(space.vectors_, (unit - space.mean_) @ space.axes_, atol=1e-4)


def test_feedback_finds_every_row_of_a_hash_among_many():
    sha = np.array([f"{i % 50_000:064x}" for i in range(100_000)], object)  # each image under two paths
    scorer = KeywordScorer(None, sha, None, None, None)
    found = scorer.rows_of_sha([f"{7:064x}", f"{49_999:064x}", "f" * 64])
    assert [rows.tolist() for rows in found] == [[7, 50_007], [49_999, 99_999], []]


@pytest.mark.parametrize("exclude_judged", [False, True])
def test_a_learned_page_is_the_full_ranking_sliced(exclude_judged):
    """filled_page only sorts the head it returns; the order is evidence first, then the raw decision, then row."""
    rng = np.random.default_rng(2)
    n = 5_000
    score = np.where(rng.uniform(size=n) < 0.01, rng.uniform(0.01, 1, n), 0.0)
    net = rng.choice([0] * 20 + [1, -1], n)
    decision = np.round(rng.normal(size=n), 2)  # many exact ties
    s = KeywordScores(Resolution("w", "unknown"), score, score, score, net, net != 0, object(), None, 0, decision)
    allowed = (net >= 0) & ~(exclude_judged & (net != 0))
    evidence = (score >= 0.01) | (net > 0)
    rows = np.flatnonzero(allowed)
    key_evidence = np.where(evidence[rows], np.maximum(net[rows], 0) * 2.0 + score[rows], -np.inf)
    decision_key = np.where(evidence[rows], 0.0, decision[rows])  # evidence ties go by row
    reference = rows[np.lexsort((rows, -decision_key, -key_evidence))]
    for k, offset in [(20, 0), (20, 20), (40, 0), (7, 13), (100, 4_900)]:
        page = filled_page(replace(s), k, 0.01, offset, exclude_judged)
        assert page.tolist() == reference[offset : offset + k].tolist()


def test_euclidean_and_manhattan_share_one_approximate_index():
    """Above the exact threshold one L2 graph proposes for both metrics; each re-ranks exactly in its own."""
    from sklearn.metrics import pairwise_distances

    from lab.search.similar import SimilarImages

    rng = np.random.default_rng(3)
    centers = rng.normal(size=(60, 24)).astype(np.float32)
    vectors = centers[rng.integers(0, 60, 51_000)] + 0.3 * rng.normal(size=(51_000, 24)).astype(np.float32)
    similar = SimilarImages({"transfer": vectors})
    euclidean, manhattan = similar.index("euclidean", "transfer"), similar.index("manhattan", "transfer")
    assert euclidean.algorithm_ == "hnsw" and manhattan._index is euclidean._index  # one graph in memory
    for metric in ("euclidean", "manhattan"):
        rows, distances, _ = similar.kneighbors(vectors[7], 10, metric, "transfer", exclude=7)
        truth = pairwise_distances(vectors[7:8], vectors, metric=metric)[0]
        truth[7] = np.inf
        assert len(set(rows) & set(np.argsort(truth)[:10])) >= 9
        np.testing.assert_allclose(distances, truth[rows], rtol=1e-4)


def test_a_collection_in_several_segments_is_read_where_it_lies(tmp_path):
    """Segments are never concatenated into memory: rows, slices and searches read each segment's memory map."""
    import pandas as pd

    from lab import Collection
    from lab.stacked import RowStack

    rng = np.random.default_rng(4)
    col = Collection.open(tmp_path / "c.lab", create=True)
    parts = []
    for segment in range(3):
        n = 40 + segment
        embeddings = rng.normal(1.0, 0.5, (n, 1280)).astype(np.float32)
        probabilities = rng.dirichlet(np.full(1000, 0.05), n).astype(np.float32)
        images = pd.DataFrame({"path": [f"/s{segment}/{i}.jpg" for i in range(n)], "size": 0, "mtime_ns": 0,
                               "sha256": [f"{segment:032x}{i:032x}" for i in range(n)], "width": 0, "height": 0})
        col.add_features(images, embeddings, probabilities)
        parts.append(embeddings.astype(np.float16))
    col = Collection.open(tmp_path / "c.lab")
    whole = np.concatenate(parts)
    assert isinstance(col.embeddings, RowStack) and len(col.embeddings.parts) == 3
    np.testing.assert_array_equal(np.asarray(col.embeddings), whole)
    np.testing.assert_array_equal(col.embeddings[[100, 3, 45]], whole[[100, 3, 45]])
    np.testing.assert_array_equal(col.embeddings[35:85], whole[35:85])
    np.testing.assert_array_equal(col.embeddings[-1], whole[-1])
    with pytest.raises(IndexError):
        col.embeddings[len(whole)]
    found = col.similar(81, k=3)  # a row of the third segment finds itself first among exact distances
    unit = whole.astype(np.float32) / np.linalg.norm(whole.astype(np.float32), axis=1, keepdims=True)
    expected = np.argsort(-(unit @ unit[81]))[1:4]
    assert found["id"].tolist() == expected.tolist()
    col.judge("blob", 82, relevant=True)
    assert int(col.search("blob", k=1)["id"].iloc[0]) == 82
