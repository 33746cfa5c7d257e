"""Words that travel: export learned words from one collection, import them into another."""

import io
import json
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest

from lab import Collection
from lab.feedback import FeedbackStore
from lab.sample_images import label_of
from lab.word_transfer import WordTransferError, export_words, import_words, read_words

from .conftest import varied_copies

D = 8
INFO = {"model": "efficientnet-lite0", "weights_checksum": "a" * 64, "embedding_size": D}


@pytest.fixture()
def store(tmp_path):
    store = FeedbackStore(tmp_path / "source.sqlite", D)
    rng = np.random.default_rng(0)
    store.add_judgment("cat", "sha-1", "/a/1.jpg", True, "ann", rng.normal(size=D))
    store.add_judgment("cat", "sha-2", "/a/2.jpg", False, "bob", rng.normal(size=D))
    store.add_example("cat", "sha-3", "/outside/3.jpg", "ann", rng.normal(size=D))
    store.add_judgment("mug", "sha-4", "/a/4.jpg", True, "", rng.normal(size=D))
    return store


def test_round_trip_keeps_votes_users_times_and_embeddings(store, tmp_path):
    path = export_words(store, INFO, tmp_path / "words.zip")
    target = FeedbackStore(tmp_path / "target.sqlite", D)
    report = import_words(target, INFO, path)
    for table in ("judgments", "examples"):
        theirs, their_vectors = store.rows(table)
        ours, our_vectors = target.rows(table)
        pd.testing.assert_frame_equal(theirs, ours)
        np.testing.assert_array_equal(their_vectors, our_vectors)
    assert report.table.set_index("word").loc["cat"].to_dict() == {"judgments": 2, "examples": 1, "already_here": 0}
    assert report.n_added == 4
    assert "cat: 2 judgments, 1 example\n" in str(report) and str(report).startswith("imported 2 words from")


def test_importing_twice_does_not_double_count(store, tmp_path):
    path = export_words(store, INFO, tmp_path / "words.zip")
    target = FeedbackStore(tmp_path / "target.sqlite", D)
    import_words(target, INFO, path)
    votes_once = target.votes("cat")["net"]
    again = import_words(target, INFO, path)
    assert again.n_added == 0 and again.table["already_here"].sum() == 4
    assert "nothing new" in str(again)
    assert len(target.judgments()) == 3 and len(target.examples("cat")[0]) == 1
    pd.testing.assert_series_equal(target.votes("cat")["net"], votes_once)
    # and back into the source collection: nothing new there either
    assert import_words(store, INFO, path).n_added == 0


def test_an_imported_older_judgment_does_not_override_a_newer_one(store, tmp_path):
    path = export_words(store, INFO, tmp_path / "words.zip")  # ann: sha-1 relevant
    target = FeedbackStore(tmp_path / "target.sqlite", D)
    target.add_judgment("cat", "sha-1", "/b/1.jpg", False, "ann", np.ones(D))  # ann changed her mind later
    import_words(target, INFO, path)
    assert target.votes("cat").loc["sha-1", "net"] == -1


def test_export_of_chosen_words_only(store, tmp_path):
    path = export_words(store, INFO, tmp_path / "words.zip", ["mug"])
    _, tables = read_words(path)
    assert set(tables["judgments"][0]["term"]) == {"mug"} and len(tables["examples"][0]) == 0
    with pytest.raises(WordTransferError, match="no feedback for 'dog'.*cat, mug"):
        export_words(store, INFO, tmp_path / "other.zip", ["dog"])


def test_another_backbone_is_refused_and_nothing_is_added(store, tmp_path):
    path = export_words(store, INFO, tmp_path / "words.zip")
    target = FeedbackStore(tmp_path / "target.sqlite", D)
    for other in ({**INFO, "model": "efficientnet-lite2"}, {**INFO, "weights_checksum": "b" * 64}):
        with pytest.raises(WordTransferError, match="cannot be compared"):
            import_words(target, other, path)
    assert target.terms().empty


def test_a_folder_with_the_same_files_imports_too(store, tmp_path):
    path = export_words(store, INFO, tmp_path / "words.zip")
    folder = tmp_path / "unzipped"
    with zipfile.ZipFile(path) as archive:
        archive.extractall(folder)
    assert import_words(FeedbackStore(tmp_path / "t.sqlite", D), INFO, folder).n_added == 4


def _rewrite(path, member, data):
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members[member] = data
    with zipfile.ZipFile(path, "w") as archive:
        for name, value in members.items():
            archive.writestr(name, value)


def test_bad_files_get_a_clear_message_and_add_nothing(store, tmp_path):
    target = FeedbackStore(tmp_path / "target.sqlite", D)
    with pytest.raises(WordTransferError, match="no words file"):
        import_words(target, INFO, tmp_path / "missing.zip")
    (tmp_path / "notes.zip").write_text("not a zip")
    with pytest.raises(WordTransferError, match="not a readable words file"):
        import_words(target, INFO, tmp_path / "notes.zip")

    pickled = export_words(store, INFO, tmp_path / "pickled.zip")
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)
    _rewrite(pickled, "judgments.npy", buffer.getvalue())
    with pytest.raises(WordTransferError, match="not a plain float array"):
        import_words(target, INFO, pickled)

    short = export_words(store, INFO, tmp_path / "short.zip")
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((2, D), np.float32))
    _rewrite(short, "judgments.npy", buffer.getvalue())
    with pytest.raises(WordTransferError, match=r"expected float32 \(3, 8\)"):
        import_words(target, INFO, short)

    other = export_words(store, INFO, tmp_path / "other.zip")
    _rewrite(other, "words.json", json.dumps({"format": "something-else"}))
    with pytest.raises(WordTransferError, match="not a lab words file"):
        import_words(target, INFO, other)
    assert target.terms().empty


def test_a_word_taught_in_one_collection_finds_other_photos_of_it_in_another(tmp_path, photo_collection, photo_folder):
    """Teach 'chelsea' (a word ImageNet does not have) on the original photos, find crops of her elsewhere."""
    source = Collection.open(shutil.copytree(photo_collection.root, tmp_path / "source"))
    source.teach("chelsea", photo_folder / "cat__chelsea.jpg", user="ann")
    source.judge("chelsea", photo_folder / "coffee__coffee.jpg", relevant=False, user="ann")
    path = source.export_words(tmp_path / "words.zip", words=["chelsea"])

    crops = varied_copies(photo_folder, tmp_path / "crops", 27)  # one crop of each photo: other files, other pixels
    sources = sorted(photo_folder.glob("*.jpg"))
    label = {str(crop.resolve()): label_of(sources[i % len(sources)]) for i, crop in enumerate(crops)}
    target = Collection.open(tmp_path / "target", create=True)
    target.add(crops, progress=False)
    assert not set(target.images["sha256"]) & set(source.images["sha256"])
    before = target.search("chelsea", k=3)  # GloVe relates the word to football only
    assert "cat" not in {label[p] for p in before["path"]}

    report = target.import_words(path)
    assert report.table.to_dict(orient="records") == [{"word": "chelsea", "judgments": 1, "examples": 1, "already_here": 0}]
    found = target.search("chelsea", k=3)
    assert label[found["path"].iloc[0]] == "cat"
    assert "coffee" not in {label[p] for p in found["path"]}

    assert target.import_words(path).n_added == 0  # twice: nothing new
    assert target.terms().set_index("term").loc["chelsea", ["judgments", "examples"]].tolist() == [1, 1]


def test_words_command_line(tmp_path, photo_collection, photo_folder, capsys):
    from lab.cli import main

    source = shutil.copytree(photo_collection.root, tmp_path / "source")
    target = shutil.copytree(photo_collection.root, tmp_path / "target", ignore=shutil.ignore_patterns("feedback.sqlite*"))
    assert main(["teach", "-c", str(source), "my mug", str(photo_folder / "coffee__coffee.jpg")]) == 0
    capsys.readouterr()
    assert main(["words", "export", "-c", str(source), str(tmp_path / "w.zip"), "--word", "my mug"]) == 0
    out = capsys.readouterr().out
    assert "wrote 1 word (my mug)" in out and "lab words import" in out
    assert main(["words", "import", "-c", str(target), str(tmp_path / "w.zip"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["words"] == [{"word": "my mug", "judgments": 0, "examples": 1, "already_here": 0}]
    assert main(["words", "import", "-c", str(target), str(tmp_path / "w.zip")]) == 0
    assert "nothing new" in capsys.readouterr().out

    manifest = json.loads((target / "manifest.json").read_text())
    (target / "manifest.json").write_text(json.dumps({**manifest, "weights_checksum": "0" * 64}))
    assert main(["words", "import", "-c", str(target), str(tmp_path / "w.zip")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lab words: error:") and "cannot be compared" in err and "\n" not in err


def test_records_missing_what_the_store_needs_are_refused_before_anything_is_added(store, tmp_path):
    path = export_words(store, INFO, tmp_path / "words.zip")
    with zipfile.ZipFile(path) as archive:
        document = json.loads(archive.read("words.json"))
    target = FeedbackStore(tmp_path / "target.sqlite", D)
    for broken, message in [
        ({**document, "judgments": [{**document["judgments"][0], "created": None}] + document["judgments"][1:]}, "needs a text 'created'"),
        ({**document, "judgments": [{**document["judgments"][0], "relevant": "yes"}] + document["judgments"][1:]}, "true/false 'relevant'"),
        ({**document, "examples": "cat"}, "must be a list of records"),
        ({k: v for k, v in document.items() if k != "backbone"}, "which backbone"),
    ]:
        _rewrite(path, "words.json", json.dumps(broken))
        with pytest.raises(WordTransferError, match=message):
            import_words(target, INFO, path)
    assert target.terms().empty
