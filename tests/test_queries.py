"""Bad query arguments get a clear error naming the argument, in Python and on the command line (issue 9)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lab import Collection
from lab.feedback import FeedbackStore
from lab.sample_images import label_of
from lab.validation import check_count, check_image, check_relevant, check_word

ROOT = Path(__file__).resolve().parents[1]
LAB = [sys.executable, "-m", "lab.cli"]
TF_LOG = re.compile(r"^(WARNING: All log messages before absl|[IWE]\d{4} )")  # TensorFlow's own start-up lines


@pytest.fixture()
def col(tmp_path, photo_collection):
    shutil.copytree(photo_collection.root, tmp_path / "col")
    return Collection.open(tmp_path / "col")


# ------------------------------------------------------------ the checks alone
@pytest.mark.parametrize("value", [2.5, 3.0, "3", None, True, np.float32(1)])
def test_counts_must_be_whole_numbers(value):
    with pytest.raises(TypeError, match="^k must be a whole number"):
        check_count(value, "k", 1)


def test_counts_accept_numpy_integers_and_respect_the_minimum():
    assert check_count(np.int64(4), "k", 1) == 4 and type(check_count(np.int64(4), "k", 1)) is int
    with pytest.raises(ValueError, match="offset must be at least 0, got -1"):
        check_count(-1, "offset")


@pytest.mark.parametrize("value", ["no", "yes", "False", 2, -1, None, 0.5])
def test_relevant_must_be_a_real_boolean(value):
    with pytest.raises(TypeError, match="relevant must be True or False"):
        check_relevant(value)


def test_relevant_accepts_booleans_numpy_booleans_and_0_1():
    assert [check_relevant(v) for v in (True, False, np.bool_(True), 1, 0, np.int8(0))] == [True, False, True, True, False, False]


@pytest.mark.parametrize("word", ["dog", "猫", "собака", "café", "ｄｏｇ", "r2d2"])
def test_words_in_any_script_pass(word):
    assert check_word(word) == word


@pytest.mark.parametrize("word", ["", "  ", "123", "?!", "🙂"])
def test_words_without_letters_are_refused(word):
    with pytest.raises(ValueError, match="query"):
        check_word(word)


def test_images_that_can_never_be_images_are_refused(tmp_path):
    with pytest.raises(ValueError, match="empty path"):
        check_image("")
    with pytest.raises(ValueError, match="is a folder"):
        check_image(tmp_path)
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    for special in ("pipe.jpg", "zero.jpg"):
        with pytest.raises(ValueError, match="not a regular file"):
            check_image(tmp_path / special)
    with pytest.raises(TypeError, match="row id"):
        check_image(True)
    with pytest.raises(TypeError, match="int"):
        check_image(3.0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        check_image(np.array([0.1, np.inf, 0.2], np.float32))


# ------------------------------------------------------------ the collection's methods
def test_search_k_and_offset_are_checked_first(col):
    with pytest.raises(TypeError, match="^k must be a whole number, got 2.5"):
        col.search("dog", k=2.5)
    with pytest.raises(TypeError, match="^offset must be a whole number"):
        col.search("dog", offset=1.5)
    with pytest.raises(ValueError, match="^k must be at least 1"):
        col.search("dog", k=0)
    assert col.search("dog", k=np.int64(2)).pipe(len) == 2


def test_similar_refuses_an_empty_path_a_folder_and_a_nan_vector(col, photo_folder):
    with pytest.raises(ValueError, match="empty path"):
        col.similar("")
    with pytest.raises(ValueError, match="is a folder"):
        col.similar(photo_folder)
    width = col.embeddings.shape[1]
    for bad in (np.nan, np.inf, -np.inf):
        vector = np.asarray(col.embeddings[0], np.float32).copy()
        vector[5] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            col.similar(vector)
    with pytest.raises(ValueError, match="NaN or infinite"):
        col.similar(np.full(1000, np.nan), layer="output")
    # a finite vector still works: the row's own vector finds that row first
    found = col.similar(np.asarray(col.embeddings[3], np.float32), k=1)
    assert found["id"].tolist() == [3] and width == len(col.embeddings[3])


def test_judge_stores_only_real_booleans(col):
    with pytest.raises(TypeError, match="relevant must be True or False, got 'no'"):
        col.judge("cat", 0, relevant="no")
    assert len(col.judgments()) == 0
    col.judge("cat", 0, relevant=np.bool_(False))
    assert col.judgments("cat")["relevant"].tolist() == [False]


def test_a_word_in_any_script_can_be_taught_and_searched(col):
    cats = [row for row, path in enumerate(col.paths) if label_of(path) == "cat"]
    col.teach("猫", cats[0])
    col.judge("ＣＡＴ", cats[0])  # full-width letters are the same word as "cat"
    assert col.judgments("cat")["term"].tolist() == ["cat"]
    assert "猫" in col.terms()["term"].tolist()
    found = col.search("猫", k=5)
    assert cats[0] in found["id"].tolist()


def test_judging_several_images_writes_all_or_none(col):
    n = len(col)
    with pytest.raises(IndexError, match=f"row id {n} is out of range"):
        col.judge("cat", [n - 2, n - 1, n])
    with pytest.raises(ValueError, match="not in the collection"):
        col.judge("cat", [0, "/nowhere/else.jpg"])
    assert len(col.judgments()) == 0
    ids = col.judge("cat", [n - 2, n - 1], relevant=False)
    assert len(ids) == 2 and col.judgments("cat")["id"].tolist() == ids


def test_feedback_store_rolls_back_a_batch_with_a_bad_row(tmp_path):
    store = FeedbackStore(tmp_path / "f.sqlite", 4)
    good = ("cat", "a" * 64, "/x.jpg", True, "u", np.ones(4))
    with pytest.raises(ValueError, match="4 values"):
        store.add_judgments([good, ("cat", "b" * 64, "/y.jpg", True, "u", np.ones(3))])
    assert len(store.judgments()) == 0
    assert store.add_judgments([good, good]) == [1, 2]


# ------------------------------------------------------------ the command line
def run(args):
    return subprocess.run(LAB + args, capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_cli_errors_are_one_line_without_traceback_and_judge_writes_all_or_none(col, photo_folder):
    c = ["-c", str(col.root)]
    n = len(col)
    cases = {
        ("search", "dog", "-k", "2.5"): "-k",
        ("search", "dog", "-k", "0"): "k must be at least 1",
        ("search", ""): "query is empty",
        ("similar", ""): "empty path",
        ("similar", str(photo_folder)): "is a folder",
        ("similar", "/no/such/image.jpg"): "no such image",
        ("judge", "cat", str(n - 2), str(n - 1), str(n)): "out of range",
        ("teach", "dog", ""): "empty path",
    }
    for args, expected in cases.items():
        result = run([args[0], *c, *args[1:]])
        lines = [line for line in result.stderr.splitlines() if line.strip() and not TF_LOG.match(line)]
        assert result.returncode == 2, (args, result.stderr)
        assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.stderr, (args, result.stderr)
    assert len(Collection.open(col.root).judgments()) == 0  # the failed judge stored nothing
    ok = run(["judge", *c, "cat", str(n - 2), str(n - 1)])
    assert ok.returncode == 0 and "recorded 2 judgments" in ok.stdout
    taught = run(["teach", *c, "猫", "0"])
    assert taught.returncode == 0, taught.stderr
