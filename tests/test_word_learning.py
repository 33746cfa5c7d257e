"""Word learning on a look-alike collection and `lab evaluate` (issue 8): real photos."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lab import Collection
from lab.sample_images import label_of
from lab.session import SearchSession

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_rejected_daisies_stop_coming_for_dandelion(flower_photos, tmp_path):
    col, labels, _ = flower_photos
    shutil.copytree(col.root, tmp_path / "col")
    col = Collection.open(tmp_path / "col")
    label = labels.reindex(col.paths).to_numpy()
    session = SearchSession(col, "dandelion", page_size=20)
    # the vocabulary leads "dandelion" to the daisy class: show the user a page of daisies and let them reject it
    daisies = [int(row) for row in col.search("dandelion", k=60)["id"] if label[row] == "daisy"][:20]
    assert len(daisies) == 20
    session.skip(daisies)
    session.judge(daisies, False)
    following = session.next_page()
    assert len(following) == 20
    assert (label[following["id"]] == "daisy").sum() <= 5  # new ground, not more look-alikes
    assert (label[following["id"]] == "dandelion").sum() >= 1  # and the word is found


@pytest.mark.slow
def test_a_word_nothing_is_known_about_shows_every_species_on_the_first_page(flower_photos, tmp_path):
    col, labels, _ = flower_photos
    label = labels.reindex(col.paths).to_numpy()
    with col.scratch_feedback():
        page = SearchSession(col, "zorblet", page_size=20).next_page()
    assert page.attrs["kind"] == "unknown" and len(page) == 20
    # the broad groups of the collection first: five species, each at least twice (the finer groups
    # alone, least familiar first, showed one sunflower)
    counts = pd.Series(label[page["id"]]).value_counts()
    assert len(counts) == 5 and counts.min() >= 2


@pytest.mark.slow
def test_every_flower_is_found_by_the_second_page(flower_photos, tmp_path):
    from lab.evaluation import evaluate

    col, _, folder = flower_photos
    shutil.copytree(col.root, tmp_path / "col")
    col = Collection.open(tmp_path / "col")
    from lab.evaluation import collection_labels

    result = evaluate(col, collection_labels(col, folder / "labels.csv"), rounds=2, seeds=1, n_queries=100, progress=False)
    assert result.words["first_relevant_page"].max() <= 2 and result.words["first_relevant_page"].notna().all()
    assert len(col.judgments()) == 0  # the evaluation never writes into the collection
    # per word, what the vocabulary looks for and what the network calls the word's photos: the look-alike shows
    words = result.words.set_index("word")
    assert words.loc["daisy", "vocabulary"] == "daisy" and words.loc["daisy", "network_calls"].startswith("daisy ")
    assert words.loc["dandelion", "vocabulary"].split(": ")[-1].startswith("daisy") and "daisy" in words.loc["dandelion", "network_calls"]
    assert words.loc["daisy", "named_by_vocabulary"] >= 0.7  # the network calls most daisies daisies
    assert "## Words not found" not in result.to_markdown()  # every word was found: nothing to explain


@pytest.fixture(scope="module")
def labeled_collection(photo_folder, tmp_path_factory):
    """The sample photos sorted into one folder per label, indexed."""
    root = tmp_path_factory.mktemp("labeled")
    for path in sorted(photo_folder.iterdir()):
        (root / "images" / label_of(path)).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / "images" / label_of(path) / path.name)
    col = Collection.open(root / "col", create=True)
    col.add(root / "images", progress=False)
    return col, root


def test_lab_evaluate_reads_folder_labels_and_writes_tables_without_touching_feedback(labeled_collection, tmp_path):
    col, root = labeled_collection
    col.judge("cat", 0, relevant=True, user="owner")
    before = col.judgments()
    done = subprocess.run(
        [sys.executable, "-m", "lab.cli", "evaluate", "-c", str(col.root), "--words", "cat", "coffee", "--rounds", "2", "--json", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    words = {w["word"]: w for w in report["words"]}
    assert set(words) == {"cat", "coffee"}
    assert words["coffee"]["p@20"] > 0 and words["cat"]["first_relevant_page"] == 1
    assert set(pd.read_csv(tmp_path / "evaluation_query_by_example.csv")["metric"]) == {"cosine", "euclidean", "manhattan"}
    assert (tmp_path / "evaluation.md").read_text().startswith("# Evaluation of")
    pd.testing.assert_frame_equal(Collection.open(col.root).judgments(), before)  # nothing written


def test_lab_evaluate_with_a_labels_csv_and_a_clear_error_for_unknown_words(labeled_collection, tmp_path):
    from lab.evaluation import collection_labels, evaluate

    col, root = labeled_collection
    table = pd.DataFrame({"path": [str(Path(p).relative_to(root)) for p in col.paths], "label_name": ["thing" if "coffee" not in p else "mug" for p in col.paths]})
    table.to_csv(root / "labels.csv", index=False)
    labels = collection_labels(col, root / "labels.csv")
    assert set(labels.index) == set(col.paths) and (labels == "mug").sum() == 1
    with pytest.raises(ValueError, match="no label for teapot"):
        evaluate(col, labels, words=["teapot"], progress=False)


def test_a_collection_cut_to_a_few_images_a_label_keeps_their_features_and_labels(labeled_collection, tmp_path):
    import numpy as np

    from lab.datasets import cut_per_label, labels_by_path

    col, root = labeled_collection
    labels_csv = tmp_path / "labels.csv"
    names = [Path(p).parent.name for p in col.paths]
    pd.DataFrame({"path": col.paths, "label_name": [""] + names[1:]}).to_csv(labels_csv, index=False)  # the first image has no label
    written = cut_per_label(col, labels_csv, tmp_path, "cut", per_label=1)
    cut = Collection.open(tmp_path / "cut.lab")
    labels = labels_by_path(written)
    assert len(cut) == labels.nunique() == len(set(names[1:])) and col.paths[0] not in cut.paths  # one image of every label, none unlabeled
    assert (labels.reindex(cut.paths).to_numpy() == [Path(p).parent.name for p in cut.paths]).all()
    rows = [col.paths.index(p) for p in cut.paths]
    np.testing.assert_array_equal(np.asarray(cut.embeddings), np.asarray(col.embeddings[rows]))  # features copied, not re-extracted
    assert cut_per_label(col, labels_csv, tmp_path, "again", per_label=1) and Collection.open(tmp_path / "again.lab").paths == cut.paths  # seeded
    with pytest.raises(ValueError, match="per_label must be a whole number"):
        cut_per_label(col, labels_csv, tmp_path, "none", per_label=0)


def test_search_settings_are_compared_side_by_side_and_the_collection_keeps_its_own(labeled_collection):
    from lab.evaluation import evaluate_settings
    from lab.search import SearchConfig

    col, root = labeled_collection
    own = SearchConfig(min_score=0.02)
    col.config = own
    before = col.judgments()
    try:
        runs, results = evaluate_settings({"photos": (col, None)}, {"default": SearchConfig(), "no spreading": SearchConfig(spread_share=0.0)}, seeds=(0, 1))
        assert col.config is own
    finally:
        col.config = SearchConfig()
    assert list(zip(runs["setting"], runs["seed"])) == [("default", 0), ("default", 1), ("no spreading", 0), ("no spreading", 1)]
    assert set(results) == {("photos", setting, seed) for setting in ("default", "no spreading") for seed in (0, 1)}
    first = results["photos", "default", 0].summary()
    pages = [column for column in runs.columns if column.startswith("found in ")]  # as many pages as 27 photos fill
    assert pages and [runs.loc[0, column] for column in pages] == [value for key, value in first.items() if key.startswith("found_in_")]
    assert runs.loc[0, "words"] == first["n_words"] > 1
    pd.testing.assert_frame_equal(col.judgments(), before)  # every run on a throw-away store


def test_the_report_explains_each_word_never_found():
    from lab.evaluation import Evaluation

    words = pd.DataFrame({"word": ["lotus", "daisy", "garfield"], "kind": ["related", "imagenet", "unknown"], "n_relevant": [66, 120, 1], "p@20": [0.0, 1.0, 0.0],
                          "first_relevant_page": [float("nan"), 1.0, float("nan")], "found": [0, 80, 0], "new_page_precision": ["0.00 0.00", "1.00 1.00", "0.00 0.00"],
                          "teach_once_p@20": [0.7, 1.0, 0.0], "vocabulary": ["giant schnauzer, jaguar", "daisy", ""], "named_by_vocabulary": [0.0, 0.79, 0.0],
                          "network_calls": ["daisy 55%, pot 11%", "daisy 79%, bee 5%", "comic book 100%"]})
    rounds = pd.DataFrame({"word": ["lotus", "lotus", "daisy", "daisy", "garfield", "garfield"], "round": [0, 1, 0, 1, 0, 1], "precision": [0.0, 0.0, 1.0, 1.0, 0.0, 0.0],
                           "achievable": [1.0] * 6, "found": [0, 0, 20, 40, 0, 0], "first_page_p@20": [0.0, 0.0, 1.0, 1.0, 0.0, 0.0]})
    taught = pd.DataFrame({"word": ["lotus"], "seed": [0], "p@20": [0.7]})
    report = Evaluation(words, rounds, words, pd.DataFrame(), taught, rounds).to_markdown()
    section = report.split("## Words not found in 2 pages")[1].split("##")[0]
    assert ("**lotus** (66 images): the vocabulary looks for giant schnauzer, jaguar (the network's top class for 0% of them); "
            "the network calls them daisy 55%, pot 11%") in section
    assert "**garfield** (1 image): the vocabulary knows nothing of it; the network calls them comic book 100%" in section
    assert "**daisy**" not in section  # only the words never found are listed


def _write_labels(root, rows, name="labels.csv"):
    path = root / name
    path.write_text("path,label_name\n" + "".join(f"{p},{label}\n" for p, label in rows))
    return path


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        ("path,label_name\nimages/cat/cat__chelsea.jpg,K\u00e4fer\n".encode("latin-1"), "is not UTF-8 text"),
        (b"path,label_name\nimages/cat/cat__chelsea.jpg,cat,extra\n", "a row has more fields than the header"),  # was: the path column taken as the index
        (b"path,label_name\nimages/cat/cat__chelsea.jpg,cat\nimages/cat/cat__chelsea.jpg,coffee\n", "gives 1 image two labels"),
        (b"path,label_name\n\n,cat\n", "1 row with no path \\(labeled cat\\)"),
        (b"file,label\na.jpg,cat\n", "needs the columns path and label_name"),
        (b"path,label_name,label_name\na.jpg,cat,dog\n", "has the column label_name twice"),
        (b"path,label_name, path\na.jpg,cat,b.jpg\n", "has the column path twice"),  # repeated once stripped
        (b'path,label_name\n"a.jpg,cat\n', "cannot be read as CSV"),  # an unclosed quote is no extra field
        (b"path,label_name\n", "has no rows"),
        (b"path;label_name\na.jpg;cat\n", "separated by ';': save it with commas"),
        (b"Path,Label_Name\na.jpg,cat\n", "the names are lower case"),
    ],
)
def test_a_bad_labels_file_is_refused_by_name(labeled_collection, tmp_path, content, message):
    from lab.evaluation import collection_labels

    col, root = labeled_collection
    (tmp_path / "labels.csv").write_bytes(content)
    with pytest.raises(ValueError, match=message) as refused:
        collection_labels(col, tmp_path / "labels.csv")
    assert str(tmp_path / "labels.csv") in str(refused.value)


def test_a_labels_file_is_read_as_text_stripped_and_deduplicated(tmp_path):
    from lab.datasets import read_labels_csv

    # a spaced header, a BOM, "NA" and "null" as labels, a row repeated, one repeated with "./" and spaces
    (tmp_path / "labels.csv").write_text("\ufeffpath , label_name\na.jpg,NA\nb.jpg, null \na.jpg,NA\n./b.jpg,null\nc.jpg,\n", encoding="utf-8")
    table = read_labels_csv(tmp_path / "labels.csv")
    assert table.to_dict("list") == {"path": [str(tmp_path / n) for n in ("a.jpg", "b.jpg", "c.jpg")], "label_name": ["NA", "null", ""]}


def test_lab_evaluate_names_what_it_leaves_out_and_writes_json_without_nan(labeled_collection, tmp_path):
    col, root = labeled_collection
    images = {label_of(Path(p)): str(Path(p).relative_to(root)) for p in col.paths}
    rows = [(images["cat"], "cat"), (images["coffee"], "coffee"), (images["flower"], ""), (images["rocket"], "123"),
            ("images/cat/not-there.jpg", "cat"), (images["cat"], "cat")]  # the last repeats the first: counted once
    labels_csv = _write_labels(root, rows, name="labels_left_out.csv")
    done = subprocess.run([sys.executable, "-m", "lab.cli", "evaluate", "-c", str(col.root), "--labels", str(labels_csv), "--rounds", "1", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout, parse_constant=lambda constant: pytest.fail(f"{constant} in the JSON"))  # NaN is no JSON
    assert {w["word"] for w in report["words"]} == {"cat", "coffee"}
    left_out = report["facts"]["left_out"]
    assert left_out["labeled paths not in the collection"] == [str(root / "images/cat/not-there.jpg")]
    assert left_out["images with an empty label"] == [str(root / images["flower"])]
    assert left_out["labels that are not words (no letters)"] == ["123"]
    assert "not-there.jpg" in done.stderr and "no letters): 1 (123)" in done.stderr
    # query by example: no label has a second image, so no query could find anything; none is counted
    assert report["facts"]["n_queries"] == 0 and report["query_by_example"] == []


def test_lab_evaluate_judges_no_more_pages_than_the_collection_fills(labeled_collection):
    from lab.evaluation import collection_labels, evaluate

    col, _ = labeled_collection  # 27 images: 2 pages of 20
    result = evaluate(col, collection_labels(col), words=["Cat"], rounds=10**6, seeds=1, progress=False)  # a word as a label would spell it
    assert list(result.words["word"]) == ["cat"]
    assert result.facts["rounds"] == 2 and sorted(result.rounds["round"].unique()) == [0, 1]
    assert "Note: 1000000 pages to judge per word, but the collection fills 2 pages of 20: 2 judged." in result.to_markdown()


def test_labels_differing_only_in_case_are_one_label_everywhere(labeled_collection):
    from lab.evaluation import collection_labels, evaluate

    col, _ = labeled_collection
    labels = collection_labels(col)
    label = labels.value_counts().index[0]  # the label with the most images
    assert (labels == label).sum() >= 2
    recased = labels.copy()
    recased[labels[labels == label].index[::2]] = label.upper()  # every other image of it spelt in capitals
    runs = [evaluate(col, given, words=[label], rounds=1, k=10, seeds=1, progress=False) for given in (labels, recased)]
    assert runs[1].query_by_example.equals(runs[0].query_by_example)  # query by example too: a "Cat" finds the "cat" images
    assert runs[1].words.equals(runs[0].words) and list(runs[1].words.columns[:4]) == ["word", "kind", "n_relevant", "p@10"]
    note = next(line for line in runs[1].to_markdown().splitlines() if "are one label" in line)
    assert note.startswith("Note: labels that name one word (in capitals or not, singular or plural) are one label: ") and {label, label.upper()} <= set(note.rstrip(".").split(": ")[-1].split(" = "))
    assert "P@10" in runs[1].to_markdown() and "P@20" not in runs[1].to_markdown()  # named after the page size it ran with


def test_labels_naming_one_word_are_one_label_and_a_word_may_be_asked_in_either_number(labeled_collection):
    from lab.evaluation import _usable_labels, evaluate

    col, _ = labeled_collection  # 27 images
    labels = pd.Series(["daisy"] * 10 + ["Daisies"] * 5 + ["roses"] * 12, index=col.paths)
    usable, words, _, merged = _usable_labels(col, labels)
    assert sorted(set(usable)) == ["daisy", "roses"] and merged == ["daisy = Daisies"] and sorted(words) == ["daisy", "roses"]
    result = evaluate(col, labels, words=["rose", "daisies"], rounds=1, seeds=1, progress=False)
    assert result.words["word"].tolist() == ["roses", "daisy"] and result.words["n_relevant"].tolist() == [12, 15]


def test_images_a_labels_file_leaves_out_are_never_scored(labeled_collection):
    from lab.evaluation import collection_labels
    from lab.experiments import simulate_feedback, unlabeled_rows

    col, _ = labeled_collection  # 27 images
    labels = collection_labels(col)
    word = labels.value_counts().index[0]
    other = labels[labels != word].index[0]
    partial = labels[(labels == word) | (labels.index == other)]  # only the word's images and one other are labeled
    assert len(unlabeled_rows(col, partial)) == 27 - len(partial) > 0
    with col.scratch_feedback():
        rounds = simulate_feedback(col, partial, {word: [word]}, rounds=1)
        everything = simulate_feedback(col, labels, {word: [word]}, rounds=1)
    # pages show only images whose label is known: an unlabeled image is neither relevant nor a miss
    assert rounds["shown"].sum() <= len(partial) < everything["shown"].iloc[0]
    assert rounds["found"].iloc[-1] == (labels == word).sum()


def test_lab_evaluate_checks_its_arguments_before_the_work(labeled_collection, tmp_path):
    from lab.evaluation import check_result_name, collection_labels, evaluate

    col, root = labeled_collection
    labels = collection_labels(col)
    for name, value in (("rounds", 0), ("rounds", -3), ("rounds", 1.5), ("rounds", True), ("k", 0), ("seeds", 0), ("n_queries", 0)):
        with pytest.raises(ValueError, match=f"{name} must be a whole number"):
            evaluate(col, labels, progress=False, **{name: value})
    with pytest.raises(ValueError, match="every labeled image has the label 'cat'"):
        evaluate(col, labels[labels == "cat"], progress=False)
    with pytest.raises(ValueError, match="two labels or more"):  # "cat" and "Cat" would be one word
        evaluate(col, pd.Series(["cat", "Cat"] * 13 + ["cat"], index=col.paths), progress=False)
    with pytest.raises(ValueError, match=r"no label for zebra; the labels give: .*; left out, labels that are not words \(no letters\): 123"):
        evaluate(col, labels.where(labels != "rocket", "123"), words=["zebra"], progress=False)
    with pytest.raises(ValueError, match="too long"):
        check_result_name("e" * 250)
    (tmp_path / "afile").write_text("")
    for out, name, message in ((tmp_path / "afile", "evaluation", "File exists"), (tmp_path, "", "must be a plain file name")):
        done = subprocess.run([sys.executable, "-m", "lab.cli", "evaluate", "-c", str(col.root), "--out", str(out), "--name", name],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and message in done.stderr and "simulated user" not in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]


def test_sigterm_stops_lab_evaluate_and_removes_its_scratch_store(labeled_collection, tmp_path):
    import os
    import signal
    import time

    col, root = labeled_collection
    before = col.judgments()
    process = subprocess.Popen([sys.executable, "-m", "lab.cli", "evaluate", "-c", str(col.root), "--rounds", "2"], cwd=ROOT,
                               env={**os.environ, "TMPDIR": str(tmp_path)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("lab-scratch-feedback-*")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the evaluation ended before a scratch store was seen"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143 and "lab evaluate: terminated" in stderr and "resume" not in stderr
    assert not list(tmp_path.glob("lab-scratch-feedback-*"))  # the throw-away store went with it
    pd.testing.assert_frame_equal(Collection.open(col.root).judgments(), before)
