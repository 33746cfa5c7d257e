"""How words are learned: the term classifier and exploration pages.

The collection here (the ``grouped`` fixture) is the 27 packaged photos plus two crops/flips of each,
so every photo forms a small group of three real images (a "class").
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from lab import Collection
from lab.exploration import Explorer
from lab.term_model import TermClassifier, logistic_direction
from lab.vectors import unit_rows


def test_logistic_direction_takes_over_with_three_judgments_each_way(grouped):
    col, groups = grouped
    vectors = unit_rows(col.embeddings)
    positives = vectors[groups == 0]
    negatives = vectors[np.isin(groups, [1, 2])]
    rocchio = TermClassifier().fit(positives, negatives[:2])
    assert not rocchio.uses_logistic_
    expected = positives.mean(axis=0) - 0.25 * negatives[:2].mean(axis=0)
    np.testing.assert_allclose(rocchio.coef_, expected / np.linalg.norm(expected), rtol=1e-5, atol=1e-6)
    both = TermClassifier().fit(positives, negatives)
    assert both.uses_logistic_ and not np.allclose(both.coef_, rocchio.coef_)
    assert np.linalg.norm(both.coef_) == pytest.approx(1.0, abs=1e-5)
    scores = both.decision_function(vectors)
    assert scores[groups == 0].min() > scores[np.isin(groups, [1, 2])].max()
    # with three judgments each way the direction is the logistic regression's alone (C=10) ...
    target = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    weight = np.r_[np.full(len(positives), 0.5 / len(positives)), np.full(len(negatives), 0.5 / len(negatives))] * len(target)
    logistic = logistic_direction(np.vstack([positives, negatives]).astype(np.float64), target, weight, C=10.0)
    np.testing.assert_allclose(both.coef_, logistic, atol=1e-6)
    # ... or, with keep_rocchio (the model before issue 8), its sum with Rocchio's
    rocchio_all = positives.mean(axis=0) - 0.25 * negatives.mean(axis=0)
    summed = rocchio_all / np.linalg.norm(rocchio_all) + logistic_direction(np.vstack([positives, negatives]).astype(np.float64), target, weight, C=1.0)
    np.testing.assert_allclose(TermClassifier(C=1.0, keep_rocchio=True).fit(positives, negatives).coef_, summed / np.linalg.norm(summed), atol=1e-6)


def test_a_background_sample_keeps_the_direction_on_the_word_when_only_look_alikes_were_rejected():
    rng = np.random.default_rng(0)
    axes = np.eye(16)

    def cloud(centre, n):
        return unit_rows(centre + 0.05 * rng.normal(size=(n, 16)))

    word, look_alike, elsewhere = axes[0], axes[0] + 0.3 * axes[1], -axes[1] + 0.2 * axes[2]
    relevant, rejected = cloud(word, 57), cloud(look_alike, 3)  # pages of a known word: mostly relevant, a few look-alikes
    background = np.vstack([cloud(elsewhere, 40), cloud(word, 10), cloud(axes[3], 40), cloud(axes[4], 40)])  # the word in it too
    unseen_word, unseen_elsewhere, unseen_look_alike = cloud(word, 20), cloud(elsewhere, 20), cloud(look_alike, 20)
    trapped = TermClassifier(background_weight=0).fit(relevant, rejected)
    # without the background the direction says "not the look-alike", which images far from both share most
    assert trapped.decision_function(unseen_elsewhere).mean() > trapped.decision_function(unseen_word).mean()
    model = TermClassifier().fit(relevant, rejected, background)
    scores = {name: model.decision_function(rows) for name, rows in (("word", unseen_word), ("elsewhere", unseen_elsewhere), ("look-alike", unseen_look_alike))}
    assert scores["word"].min() > max(scores["elsewhere"].max(), scores["look-alike"].max())
    # as many judged not relevant as relevant: the judgments alone decide, the background adds nothing
    balanced = cloud(look_alike, 57)
    np.testing.assert_allclose(TermClassifier().fit(relevant, balanced, background).coef_, TermClassifier().fit(relevant, balanced).coef_, atol=1e-6)
    with pytest.raises(ValueError, match="background_weight"):
        TermClassifier(background_weight=1.5).fit(relevant, rejected, background)
    from lab.search import SearchConfig

    for bad in ({"background_weight": 2.0}, {"background_sample": 0}, {"background_sample": -1}):
        with pytest.raises(ValueError, match="SearchConfig.background_"):
            SearchConfig(**bad)


def test_the_same_image_judged_both_ways_keeps_a_unit_direction():
    rng = np.random.default_rng(0)
    same = np.repeat(rng.normal(size=(1, 8)), 3, axis=0)
    model = TermClassifier().fit(same, same)  # no direction separates them: Rocchio's mean
    assert not model.uses_logistic_ and np.linalg.norm(model.coef_) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="min_judgments"):
        TermClassifier(min_judgments=0).fit(same, same)


@pytest.mark.parametrize("C", [0.1, 1.0, 10.0])
def test_logistic_direction_is_scikit_learns_logistic_regression(grouped, C):
    from sklearn.linear_model import LogisticRegression

    col, groups = grouped
    vectors = unit_rows(col.embeddings).astype(np.float64)
    target = np.isin(groups, [0, 4]).astype(float)  # 6 relevant, 75 not
    weight = np.where(target == 1, 0.5 / target.sum(), 0.5 / (1 - target).sum()) * len(target)
    ours = logistic_direction(vectors, target, weight, C)
    theirs = LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(vectors, target, sample_weight=weight).coef_[0]
    assert ours @ theirs / np.linalg.norm(theirs) == pytest.approx(1.0, abs=1e-6)


def test_many_judgments_are_thinned_for_the_logistic_part(grouped):
    col, groups = grouped
    vectors = unit_rows(col.embeddings)
    full = TermClassifier(max_judgments=1000).fit(vectors[groups < 10], vectors[groups >= 10])
    thinned = TermClassifier(max_judgments=5).fit(vectors[groups < 10], vectors[groups >= 10])
    assert full.uses_logistic_ and thinned.uses_logistic_
    assert not np.allclose(full.coef_, thinned.coef_)
    # the same word, seen through fewer examples: the full model ranks every relevant image above every
    # other, the one from 5 of 30 examples a side still most of them (chance would be 0.5)
    relevant = groups < 10

    def pairs_in_order(model):
        scores = vectors @ model.coef_
        return (scores[relevant][:, None] > scores[~relevant][None, :]).mean()

    assert pairs_in_order(full) == 1.0 and pairs_in_order(thinned) > 0.8


def test_explorer_shows_one_typical_image_per_group_unfamiliar_groups_first(grouped):
    col, groups = grouped
    vectors = unit_rows(col.embeddings)
    explorer = Explorer(n_clusters=27).fit(vectors, col.class_probabilities)
    page = explorer.propose(9, np.zeros(0, np.int64), vectors)
    assert len(page) == 9 and len(set(page)) == 9
    assert len(set(groups[page])) == 9  # nine different photos, not crops of the same one
    confidence = np.asarray(col.class_probabilities, np.float32).max(axis=1)
    assert np.median(confidence[page]) < np.median(confidence)  # what the network is unsure about comes first
    # the next page avoids the groups already shown
    following = explorer.propose(9, page, vectors)
    assert not set(following) & set(page)
    assert not set(groups[following]) & set(groups[page])


def test_explorer_on_a_tiny_collection(grouped):
    col, _ = grouped
    vectors = unit_rows(col.embeddings[:2])
    explorer = Explorer().fit(vectors)
    assert sorted(explorer.propose(5, np.zeros(0, np.int64), vectors)) == [0, 1]
    assert len(explorer.propose(5, np.array([0, 1]), vectors)) == 0


def test_rejections_make_room_for_exploring(tmp_path, photo_collection):
    shutil.copytree(photo_collection.root, tmp_path / "col")
    col = Collection.open(tmp_path / "col")
    first = col.search("animal", k=4)
    assert len(first) == 4 and not first["reason"].str.startswith("exploring").any()
    for row in first["id"]:
        col.judge("animal", int(row), relevant=False)
    # an ImageNet word keeps most of its page after four rejections (share 20 / 24)...
    assert not col.search("animal", k=4, explore=True, exclude_judged=True)["reason"].str.startswith("exploring").any()
    shown = col.search("animal", k=16, explore=True, exclude_judged=True)["id"]
    for row in shown:
        col.judge("animal", int(row), relevant=False)
    # ... and half of it after twenty (share 20 / 40)
    page = col.search("animal", k=4, explore=True, exclude_judged=True)
    exploring = page["reason"].str.startswith("exploring")
    assert exploring.sum() >= 2 and len(page) == 4
    assert not set(page["id"]) & (set(first["id"]) | set(shown))
