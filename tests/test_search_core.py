"""The search core on synthetic arrays: ranking, feedback, exploration, calibration; no TensorFlow.

These run in seconds. Behaviour on real photos is tested in test_search.py
and test_learning.py.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lab.exploration import Explorer, ImageGroups
from lab.feedback import FeedbackError, FeedbackStore
from lab.search import SearchConfig, SearchEngine
from lab.search.keywords import KeywordScores, calibrate
from lab.search.ranking import eligible_rows, exploring_page, filled_page, interleave, prior_share, ranked_page, spread
from lab.vectors import unit_rows
from lab.vocabulary import Resolution, load_vocabulary

ROOT = Path(__file__).resolve().parents[1]
D = 16  # embedding size of the synthetic collections


def scores_of(score, net=None, model=None, judged=None) -> KeywordScores:
    score = np.asarray(score, np.float64)
    net = np.zeros(len(score), np.int64) if net is None else np.asarray(net, np.int64)
    judged = net != 0 if judged is None else np.asarray(judged, bool)
    return KeywordScores(Resolution("word", "imagenet"), score, score, None, net, judged, model, pd.DataFrame({"net": []}), 0)


# ---------------------------------------------------------------- ranking
def test_ranking_puts_judged_relevant_first_hides_rejected_and_unevidenced():
    s = scores_of([0.9, 0.005, 0.5, 0.7, 0.0, 0.3], net=[0, 0, -1, 0, 2, 1])
    candidates = eligible_rows(s, min_score=0.01)
    assert candidates.tolist() == [0, 3, 4, 5]  # 1 has no evidence, 2 was rejected
    assert ranked_page(candidates, s, k=10).tolist() == [4, 5, 0, 3]  # more net votes first, then score
    assert eligible_rows(s, 0.01, exclude_judged=True).tolist() == [0, 3]


def _paged(s):
    candidates = eligible_rows(s, 0.01)
    whole = ranked_page(candidates, s, k=len(candidates))
    pages = np.concatenate([ranked_page(candidates, s, k=20, offset=o) for o in range(0, len(candidates), 20)])
    return whole, pages


def test_pages_split_one_ranking():
    rng = np.random.default_rng(0)
    s = scores_of(rng.uniform(0, 1, 500), net=rng.choice([0, 0, 0, 1, -1], 500))
    whole, pages = _paged(s)
    assert pages.tolist() == whole.tolist()
    key = np.maximum(s.net[whole], 0) * 2.0 + s.score[whole]
    assert (np.diff(key) < 0).all()


def test_exact_ties_within_a_ranking_go_by_row():
    s = scores_of([0.5, 0.7, 0.5, 0.5, 0.7])
    assert ranked_page(np.arange(5), s, k=5).tolist() == [1, 4, 0, 2, 3]


def test_exact_ties_across_a_page_boundary_go_by_row():
    rng = np.random.default_rng(0)
    whole, pages = _paged(scores_of(np.round(rng.uniform(0, 1, 500), 1)))
    assert pages.tolist() == whole.tolist()


def test_interleave_keeps_the_share_and_never_depends_on_the_length():
    ranked, proposals = np.arange(0, 100), np.arange(1000, 1100)
    for share in (0.0, 0.125, 0.5, 0.75, 1.0):
        rows, explored = interleave(ranked, proposals, share, 40)
        assert len(rows) == 40 and len(set(rows.tolist())) == 40
        assert abs((~explored).sum() - round(40 * share)) <= 1
        assert (share == 0) or not explored[0]  # the best evidence comes first
        for n in (1, 7, 20):
            shorter, shorter_explored = interleave(ranked, proposals, share, n)
            assert shorter.tolist() == rows[:n].tolist() and shorter_explored.tolist() == explored[:n].tolist()
    # a list that runs out leaves its places to the other; duplicates are placed once
    rows, explored = interleave(np.array([5]), np.array([5, 6, 7]), 0.5, 10)
    assert rows.tolist() == [5, 6, 7] and explored.tolist() == [False, True, True]


def test_the_prior_share_falls_with_each_rejection():
    config = SearchConfig()
    fresh = scores_of(np.full(40, 0.5))
    assert prior_share(fresh, config) == 1.0  # an ImageNet word keeps its page
    related = replace(fresh, resolution=Resolution("word", "related"))
    assert prior_share(related, config) == 0.75
    rejected = replace(related, net=np.r_[-np.ones(20, np.int64), np.zeros(20, np.int64)])
    assert prior_share(rejected, config) == pytest.approx(3 / 24)
    assert prior_share(replace(fresh, resolution=Resolution("word", "unknown")), config) == 0.0


def test_an_exploring_page_is_a_slice_of_one_ranking():
    calls = []

    def propose(n, avoid):
        calls.append(avoid.tolist())
        return np.setdiff1d(np.arange(50, 50 + n + len(avoid)), avoid)[:n]

    s = replace(scores_of(np.r_[np.linspace(0.9, 0.1, 30), np.zeros(70)], net=np.r_[np.zeros(95, np.int64), -np.ones(5, np.int64)]),
                resolution=Resolution("word", "related"))
    candidates = eligible_rows(s, 0.01, exclude_judged=True)
    page40, explored40 = exploring_page(candidates, s, 40, 0, SearchConfig(), propose)
    page20, explored20 = exploring_page(candidates, s, 20, 0, SearchConfig(), propose)
    second, _ = exploring_page(candidates, s, 20, 20, SearchConfig(), propose)
    assert page20.tolist() == page40[:20].tolist() and second.tolist() == page40[20:].tolist()
    assert set(explored20) <= set(range(50, 95)) and len(explored20) > 0 and page20[0] == 0
    assert all(avoid == list(range(95, 100)) for avoid in calls)  # only judged rows are avoided


def test_a_doubted_prior_is_spread_over_groups_of_look_alikes():
    """Twenty daisies for "dandelion": a related word's prior that favours one look-alike group shows the others too."""
    groups = np.r_[np.zeros(60, np.int64), np.repeat(np.arange(1, 5), 10)]  # the prior's best 60 rows look alike
    score = np.linspace(0.9, 0.1, 100)

    def propose(n, avoid):
        return np.arange(500, 500 + n)

    def page_of(s, k, offset=0):
        return exploring_page(eligible_rows(s, 0.01), s, k, offset, SearchConfig(), propose, lambda rows: groups[rows])

    related = replace(scores_of(score), resolution=Resolution("word", "related"))
    page, explored = page_of(related, 20)
    evidence = page[~np.isin(page, explored)]
    assert evidence[0] == 0 and set(groups[evidence].tolist()) == {0, 1, 2, 3, 4}
    assert np.isin(np.arange(8), evidence).sum() >= 4  # half the evidence still follows the prior
    page40, _ = page_of(related, 40)
    assert page40[:20].tolist() == page.tolist() and page_of(related, 20, 20)[0].tolist() == page40[20:].tolist()
    trusted, _ = page_of(scores_of(score), 20)  # an ImageNet word's prior is trusted: not spread
    assert trusted.tolist() == list(range(20))
    off = exploring_page(eligible_rows(related, 0.01), related, 20, 0, replace(SearchConfig(), spread_share=0.0), propose, lambda rows: groups[rows])[0]
    assert (off[~np.isin(off, explored)] < 60).all()


def test_spread_takes_each_groups_best_before_any_groups_second():
    ranked = np.array([10, 11, 12, 13, 14, 15])
    groups = np.array([1, 1, 2, 1, 3, 2])
    assert spread(ranked, groups).tolist() == [10, 12, 14, 11, 15, 13]


def test_a_learned_page_goes_on_in_the_learned_order_when_evidence_runs_out():
    score = np.array([0.8, 0.0, 0.0, 0.3, 0.0, 0.0])
    decision = np.array([0.9, 0.5, 0.1, 0.6, 0.7, 0.2])
    s = replace(scores_of(score, net=[0, 0, 0, 0, 0, -1]), model=object(), decision=decision)
    assert filled_page(s, 10, 0.01).tolist() == [0, 3, 4, 1, 2]  # evidence first, then by decision; rejected never
    assert filled_page(s, 2, 0.01, offset=2).tolist() == [4, 1]


# ------------------------------------------------------------ calibration
def test_calibration_scores_how_far_an_image_stands_out():
    rng = np.random.default_rng(0)
    decision = rng.normal(0.2, 0.05, 1000)
    config = SearchConfig()
    z = (decision - np.median(decision)) / (1.4826 * np.median(np.abs(decision - np.median(decision))))
    scores = calibrate(decision, config)
    assert (scores[z < config.evidence_z] == 0).all() and (scores[z >= config.evidence_z] > 0).all()
    # a logistic curve of the robust z-score, 0.5 at calibration_z deviations above the median
    shown = z >= config.evidence_z
    np.testing.assert_allclose(scores[shown], 1 / (1 + np.exp(-(z[shown] - config.calibration_z))), rtol=1e-3)
    order = np.argsort(decision)
    assert (np.diff(scores[order]) >= 0).all()
    # shifting and scaling every cosine changes nothing: only standing out counts
    np.testing.assert_allclose(calibrate(3 * decision + 1, config), scores, rtol=1e-3)


def test_query_expansion_stops_once_a_word_has_enough_examples():
    from lab.search.keywords import learned_decision
    from lab.search.space import ScoringSpace
    from lab.term_model import TermClassifier

    rng = np.random.default_rng(0)
    vectors = unit_rows(rng.normal(size=(200, D)))
    space = ScoringSpace().fit(vectors)
    config = SearchConfig(expansion_until=3)
    plain = replace(config, n_expansion=0)
    few = TermClassifier().fit(vectors[:2])
    enough = TermClassifier().fit(vectors[:3])
    # with fewer examples than expansion_until the nearest images are averaged into the direction
    assert not np.allclose(learned_decision(space, few, config), learned_decision(space, few, plain))
    # from then on the examples alone make the direction
    np.testing.assert_array_equal(learned_decision(space, enough, config), learned_decision(space, enough, plain))


# --------------------------------------------------------------- feedback
def test_feedback_store_counts_each_users_latest_vote(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.sqlite", D)
    assert not (tmp_path / "feedback.sqlite").exists()  # opened on first use only
    e = np.ones(D, np.float32)
    store.add_judgment("cat", "a", "/a.jpg", False, "ann", e)
    store.add_judgment("cat", "a", "/a.jpg", True, "ann", e)  # replaces ann's first vote
    store.add_judgment("cat", "a", "/a.jpg", True, "bob", e)
    store.add_judgment("cat", "b", "/b.jpg", False, "bob", e)
    votes = store.votes("cat")
    assert votes["net"].to_dict() == {"a": 2, "b": -1}
    assert store.version("cat") == (4, 4, 0, 0)
    with pytest.raises(ValueError, match=str(D)):
        store.add_example("cat", "c", None, None, np.ones(3))


def test_a_newer_feedback_schema_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "feedback.sqlite"
    FeedbackStore(path, D).terms()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(FeedbackError, match="schema version 99"):
        FeedbackStore(path, D).votes("cat")
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta").fetchone() == ("99",)


# ------------------------------------------------------------ exploration
def _six_groups() -> tuple[np.ndarray, np.ndarray]:
    """Group of each of 180 synthetic images and their vectors: six tight groups of 30."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, D))
    group = np.repeat(np.arange(6), 30)
    return group, (centres[group] + 0.05 * rng.normal(size=(len(group), D))).astype(np.float32)


def test_explorer_shows_one_image_per_group_away_from_avoided_ones():
    group, vectors = _six_groups()
    explorer = Explorer(pool_size=1000, n_clusters=6).fit(vectors)
    shown = explorer.propose(6, np.zeros(0, np.int64), vectors)
    assert sorted(group[shown].tolist()) == list(range(6))
    avoid = np.flatnonzero(group == group[shown[0]])[:3]
    again = explorer.propose(5, avoid, vectors)
    assert not set(again) & set(avoid) and group[shown[0]] not in set(group[again])


def test_a_related_word_discounts_images_the_network_is_sure_are_its_look_alike(tmp_path):
    """Ten photos the network calls daisies for sure, ten it half calls daisies: "dandelion" (related) prefers the unsure ones."""
    vocabulary = load_vocabulary()
    daisy = vocabulary.class_names.index("daisy")
    assert daisy in set(vocabulary.resolve("dandelion").classes.tolist()) and vocabulary.resolve("dandelion").kind == "related"
    rng = np.random.default_rng(0)
    probabilities = np.full((20, 1000), 0.05 / 999, np.float32)
    probabilities[:10, daisy] = 0.95  # sure: a daisy
    probabilities[10:] = 0.6 / 999
    probabilities[10:, daisy] = 0.4  # unsure, a daisy-like flower
    sha256 = np.array([f"{i:064x}" for i in range(20)])
    embeddings = rng.normal(size=(20, D)).astype(np.float16)

    def top_rows(word, config):
        engine = SearchEngine(embeddings, probabilities.astype(np.float16), sha256, FeedbackStore(tmp_path / f"{word}{config.confident_discount}.sqlite", D), config=config)
        return set(engine.search(word, k=10)["id"].tolist())

    assert top_rows("dandelion", SearchConfig()) == set(range(10, 20))
    assert top_rows("dandelion", SearchConfig(confident_discount=0.0)) == set(range(10))  # without it, the sure daisies first
    assert top_rows("daisy", SearchConfig()) == set(range(10))  # an ImageNet word keeps the network's word for it


def test_explorer_shows_the_broad_groups_before_finer_ones():
    """Three kinds of image, each in four finer groups; one kind has twice as many images as the others."""
    rng = np.random.default_rng(1)
    kinds = 4.0 * rng.normal(size=(3, D))
    finer = np.repeat(kinds, 4, axis=0) + 1.5 * rng.normal(size=(12, D))
    sizes = np.r_[np.full(4, 40), np.full(8, 20)]
    group = np.repeat(np.arange(12), sizes)
    vectors = (finer[group] + 0.05 * rng.normal(size=(len(group), D))).astype(np.float32)
    kind = group // 4
    broad_first = Explorer(pool_size=1000, n_clusters=12, n_broad=3).fit(vectors)
    shown = broad_first.propose(3, np.zeros(0, np.int64), vectors)
    assert sorted(kind[shown].tolist()) == [0, 1, 2]  # one image of each kind first
    assert sorted(group[broad_first.propose(12, np.zeros(0, np.int64), vectors)].tolist()) == list(range(12))  # then every finer group
    # without the broad level, the largest finer groups come first: all of one kind
    finer_only = Explorer(pool_size=1000, n_clusters=12, n_broad=0).fit(vectors)
    assert set(kind[finer_only.propose(3, np.zeros(0, np.int64), vectors)].tolist()) == {0}


def test_explorer_order_does_not_depend_on_how_many_rows_are_asked_for():
    group, vectors = _six_groups()
    explorer = Explorer(pool_size=100, n_clusters=6, n_broad=2).fit(vectors)  # 100 of 180 rows pooled
    for avoid in (np.zeros(0, np.int64), np.array([0, 1, 31, 150])):
        longest = explorer.propose(180, avoid, vectors)
        # past the groups, the pool by farthest-point sampling, past the pool the other rows: every row once
        assert len(longest) == 180 - len(avoid) and len(set(longest.tolist())) == len(longest) and not set(longest) & set(avoid)
        for k in (1, 2, 5, 6, 7, 20, 99, 100, 101, 150):
            assert explorer.propose(k, avoid, vectors).tolist() == longest[:k].tolist()


def test_explorer_goes_back_to_the_typical_image_of_groups_already_touched():
    group, vectors = _six_groups()
    explorer = Explorer(pool_size=1000, n_clusters=6, n_broad=0).fit(vectors)
    # one image of every group was judged: the groups are still shown by their most typical image,
    # not by whatever pooled row comes first
    avoid = np.array([int(np.flatnonzero(group == g)[-1]) for g in range(6)])
    again = explorer.propose(6, avoid, vectors)
    assert sorted(group[again].tolist()) == list(range(6))
    centres = np.stack([vectors[group == g].mean(axis=0) for g in range(6)])
    typical = [int(np.argmax(unit_rows(vectors[group == g]) @ unit_rows(centres[g : g + 1])[0])) + 30 * g for g in range(6)]
    assert len(set(again.tolist()) & set(typical)) >= 5


def test_image_groups_gather_look_alikes():
    group, vectors = _six_groups()
    groups = ImageGroups(group_size=30, pool_size=1000).fit(vectors)
    found = groups.predict(np.arange(len(group)), vectors)
    assert len(groups.centroids_) == 6
    assert all(len(set(found[group == g].tolist())) == 1 for g in range(6)) and len(set(found.tolist())) == 6
    assert groups.predict(np.array([31, 0]), vectors).tolist() == [found[31], found[0]]


# ---------------------------------------------------- the core end to end
@pytest.fixture()
def engine(tmp_path):
    """A synthetic collection: 200 images, 40 of them showing a cat class, a featurize that knows one outside image."""
    rng = np.random.default_rng(0)
    vocabulary = load_vocabulary()
    cat_class = int(vocabulary.resolve("cat").classes[0])
    n = 200
    embeddings = rng.normal(size=(n, D)).astype(np.float16)
    embeddings[:40] += 3.0  # the cats look alike
    probabilities = rng.dirichlet(np.full(1000, 0.05), n).astype(np.float32)
    probabilities[:40, cat_class] += 0.5
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    sha256 = np.array([f"{i:064x}" for i in range(n)])
    outside = np.asarray(embeddings[0], np.float32) + 0.01

    def featurize(image):
        assert image == "outside.jpg"
        return outside, probabilities[0], "f" * 64

    return SearchEngine(embeddings, probabilities.astype(np.float16), sha256, FeedbackStore(tmp_path / "f.sqlite", D), featurize)


def test_core_keyword_search_and_feedback_on_arrays(engine):
    page = engine.search("cats", k=20)
    assert (page["id"] < 40).all() and page.attrs["term"] == "cat" and page.attrs["n_matches"] >= 20
    assert "path" not in page.columns  # paths belong to the collection
    engine.judge("cat", 150, relevant=True, user="ann")
    engine.judge("cat", int(page["id"].iloc[0]), relevant=False, user="ann")
    again = engine.search("cat", k=20)
    assert again["id"].iloc[0] == 150 and int(page["id"].iloc[0]) not in set(again["id"])
    # an unknown word taught with an outside image finds the images like it
    assert len(engine.search("zorblax")) == 0
    engine.teach("zorblax", engine.query_image("outside.jpg"))
    taught = engine.search("zorblax", k=10)
    assert (taught["id"] < 40).all() and taught["learned"].notna().all()


def test_core_query_by_example_leaves_the_query_out(engine):
    result = engine.similar(3, k=5)
    assert 3 not in set(result["id"]) and (result["id"] < 40).all()
    assert result.attrs["query"] == "row 3"
    with pytest.raises(ValueError, match="metric"):
        engine.similar(3, metric="hamming")


def test_config_is_per_engine(engine):
    strict = SearchEngine(engine.embeddings, engine.class_probabilities, engine.sha256, engine.feedback, config=replace(SearchConfig(), min_score=0.4))
    assert strict.search("cat", k=200).attrs["n_matches"] < engine.search("cat", k=200).attrs["n_matches"]


def test_the_core_layer_never_imports_tensorflow():
    code = (
        "import sys, numpy as np\n"
        "from lab.search import SearchEngine\n"
        "from lab.feedback import FeedbackStore\n"
        "from lab.exploration import Explorer\n"
        "import tempfile, pathlib\n"
        "rng = np.random.default_rng(0)\n"
        "e = SearchEngine(rng.normal(size=(50, 8)), rng.dirichlet(np.ones(1000), 50), [str(i) for i in range(50)],\n"
        "                 FeedbackStore(pathlib.Path(tempfile.mkdtemp()) / 'f.sqlite', 8))\n"
        "e.judge('dog', 0, True); e.search('dog', k=5, explore=True); e.similar(0, k=3)\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_page_size_never_changes_the_ranking(engine):
    """For every state of judgments, the first 20 rows of a 40-row page are the 20-row page (issue 8)."""
    rng = np.random.default_rng(1)
    for word in ("cat", "zorblax", "tabby"):
        for _ in range(4):
            for explore in (False, True):
                for exclude_judged in (False, True):
                    long = engine.search(word, k=40, explore=explore, exclude_judged=exclude_judged)
                    short = engine.search(word, k=20, explore=explore, exclude_judged=exclude_judged)
                    assert long["id"].tolist()[:20] == short["id"].tolist(), (word, explore, exclude_judged)
                    later = engine.search(word, k=20, offset=20, explore=explore, exclude_judged=exclude_judged)
                    assert long["id"].tolist()[20:] == later["id"].tolist()
            for row in rng.choice(200, 7, replace=False):  # judgments change the state
                engine.judge(word, int(row), relevant=bool(row < 40 and rng.random() < 0.3))


def test_a_word_judged_mostly_relevant_with_a_few_look_alikes_rejected_keeps_to_the_word(tmp_path):
    """57 relevant, 3 look-alikes rejected: with the collection's background the next page is the word, without it 'not the look-alike'."""
    rng = np.random.default_rng(0)
    axes = np.eye(D)
    centres = [axes[0], axes[0] + 0.3 * axes[1], -axes[1] + 0.2 * axes[2]] + [axes[i] for i in range(3, 9)]
    kinds = np.repeat(np.arange(len(centres)), [100, 50, 100] + [40] * 6)  # 0 the word, 1 its look-alike, 2 elsewhere, then others
    embeddings = (np.stack([centres[k] for k in kinds]) + 0.05 * rng.normal(size=(len(kinds), D))).astype(np.float16)
    probabilities = np.full((len(kinds), 1000), 1e-3, np.float16)
    sha256 = np.array([f"{i:064x}" for i in range(len(kinds))])

    def next_page(config):
        engine = SearchEngine(embeddings, probabilities, sha256, FeedbackStore(tmp_path / f"{config.background_weight}.sqlite", D), config=config)
        for row in np.flatnonzero(kinds == 0)[:57]:
            engine.judge("zorblax", int(row), relevant=True)
        for row in np.flatnonzero(kinds == 1)[:3]:
            engine.judge("zorblax", int(row), relevant=False)
        return kinds[engine.search("zorblax", k=20, exclude_judged=True)["id"].to_numpy()]

    assert (next_page(SearchConfig()) == 0).mean() >= 0.9
    assert (next_page(SearchConfig(background_weight=0.0)) == 2).mean() >= 0.5  # the trap the background keeps it out of
