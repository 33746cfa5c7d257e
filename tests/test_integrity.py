"""A damaged collection is refused with the fix, checked, repaired; readers survive re-indexing."""

import json
import os
import multiprocessing
import shutil
import sqlite3

import numpy as np
import pytest

from lab import Collection, CollectionError
from lab.cli import main
from lab.feedback import FeedbackStoreError
from lab.sample_images import label_of

from .conftest import varied_copies


@pytest.fixture()
def col(tmp_path, photo_collection):
    """A private copy of the session collection (27 real photos in one chunk), to damage."""
    shutil.copytree(photo_collection.root, tmp_path / "col")
    return Collection.open(tmp_path / "col")


def only_chunk(col):
    (entry,) = col._manifest["chunks"]
    return col.root / "chunks" / entry["name"]


def features_by_path(col):
    return {path: np.asarray(col.embeddings[i], np.float32) for i, path in enumerate(col.paths)}


def assert_repaired(col, original, n_named=27):
    """After repair every image is back, and each row's features are its own image's."""
    report = col.repair(progress=False)
    assert report.set_aside and report.reindexed.added == n_named and not report.missing, str(report)
    if n_named < 27:  # images the damaged table no longer names: reported, recovered by indexing their folder
        assert f"lists 27 rows but its images.csv names {n_named}; {27 - n_named} image(s) may be unnamed" in report.unrecoverable[0]
        Collection.open(col.root).add({os.path.dirname(p) for p in original}, progress=False)
    repaired = Collection.open(col.root)
    assert repaired.check().ok
    assert sorted(repaired.paths) == sorted(original)
    for path, features in features_by_path(repaired).items():
        np.testing.assert_allclose(features, original[path], atol=2e-3)
    cat = repaired.paths.index(next(p for p in original if label_of(p) == "cat"))
    assert int(np.argmax(repaired.class_probabilities[cat])) in {281, 282, 283, 284, 285}
    assert (col.root / "damaged" / report.set_aside[0]["chunk"]).is_dir()  # set aside, not deleted
    return report


def test_checksums_are_recorded_at_commit_and_a_sound_collection_checks_clean(col, capsys):
    entry = col._manifest["chunks"][0]
    assert set(entry["checksums"]) == {"embeddings.npy", "class_probabilities.npy", "images.csv"}
    report = col.check()
    assert report.ok and report.problems.empty and report.n_rows == 27
    assert main(["check", "-c", str(col.root)]) == 0
    assert "no damage found" in capsys.readouterr().out


def test_a_deleted_csv_line_is_refused_and_repaired(col, capsys, photo_folder):
    original = features_by_path(col)
    csv = only_chunk(col) / "images.csv"
    lines = csv.read_text().splitlines(keepends=True)
    csv.write_text("".join(lines[:5] + lines[6:]))
    with pytest.raises(CollectionError, match=rf"{only_chunk(col).name}: images.csv has 26 rows, the manifest lists 27[\s\S]*lab repair -c"):
        Collection.open(col.root)
    # re-indexing does not call the misaligned rows "unchanged": it refuses and says how to repair
    assert main(["index", str(photo_folder), "-c", str(col.root), "-q"]) == 2
    assert "lab repair" in capsys.readouterr().err
    assert main(["check", "-c", str(col.root)]) == 1
    assert "images.csv has 26 rows" in capsys.readouterr().out
    assert_repaired(col, original, n_named=26)


def test_a_truncated_npy_is_refused_and_repaired(col):
    original = features_by_path(col)
    npy = only_chunk(col) / "embeddings.npy"
    npy.write_bytes(npy.read_bytes()[: npy.stat().st_size // 2])
    with pytest.raises(CollectionError, match=r"embeddings.npy is [\d,]+ bytes, its header promises [\d,]+ \(truncated"):
        Collection.open(col.root)
    assert_repaired(col, original)


def test_a_chunk_name_that_is_a_path_is_never_read(col, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "images.csv").write_text("path,size,mtime_ns,sha256,width,height\n")
    manifest = json.loads((col.root / "manifest.json").read_text())
    manifest["chunks"][0]["name"] = "../../outside"
    (col.root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CollectionError, match=r"not a plain folder name \('\.\./\.\./outside'\)"):
        Collection.open(col.root)
    manifest["chunks"][0]["name"] = "../../.."
    (col.root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CollectionError, match="not a plain folder name"):
        Collection.open(col.root)
    report = Collection.open(col.root, verify=False).repair(progress=False)
    assert "removed from the manifest without reading it" in report.unrecoverable[0]
    assert len(Collection.open(col.root)) == 0 and (outside / "images.csv").exists()


def test_a_wrong_row_count_is_refused_and_repaired(col, capsys):
    original = features_by_path(col)
    manifest = json.loads((col.root / "manifest.json").read_text())
    manifest["chunks"][0]["rows"] = 30
    (col.root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CollectionError, match="has 27 rows, the manifest lists 30"):
        Collection.open(col.root)
    capsys.readouterr()
    assert main(["repair", "-c", str(col.root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["set_aside"][0]["rows"] == 30 and report["reindexed"]["added"] == 27 and not report["missing"]
    assert "images.csv names 27; 3 image(s) may be unnamed" in report["unrecoverable"][0]
    repaired = Collection.open(col.root)
    assert sorted(repaired.paths) == sorted(original)
    for path, features in features_by_path(repaired).items():
        np.testing.assert_allclose(features, original[path], atol=2e-3)


def test_a_wrong_embedding_size_is_refused_and_repaired(col):
    original = features_by_path(col)
    np.save(only_chunk(col) / "embeddings.npy", np.zeros((27, 1000), np.float16))
    with pytest.raises(CollectionError, match=r"embeddings.npy has shape \(27, 1000\): rows of 1280 values expected"):
        Collection.open(col.root)
    assert_repaired(col, original)


def test_nan_rows_are_never_stored_and_damage_never_becomes_nan_scores(col, photo_folder):
    original = features_by_path(col)
    embeddings = np.asarray(col.embeddings, np.float32).copy()
    embeddings[3] = np.nan
    with pytest.raises(ValueError, match="1 row.* NaN or infinite"):
        col.add_features(col.images.assign(path=col.images["path"] + ".copy").drop(columns="id"), embeddings, col.class_probabilities)
    with pytest.raises(ValueError, match="NaN or infinite"):  # float16 overflow is refused too
        col.add_features(col.images.drop(columns="id").iloc[:1], np.full((1, 1280), 1e6), col.class_probabilities[:1])
    assert len(Collection.open(col.root)) == 27 and len(list((col.root / "chunks").iterdir())) == 1
    # NaN written into a stored chunk behind lab's back
    stored = np.load(only_chunk(col) / "embeddings.npy", mmap_mode="r+")
    stored[[3, 7]] = np.nan
    stored.flush()
    del stored
    damaged = Collection.open(col.root)  # cheap checks pass: the sizes are right
    with pytest.raises(CollectionError, match="NaN or infinite[\\s\\S]*lab repair"):
        damaged.similar(0)
    report = damaged.check()
    assert not report.ok and set(report.problems["problem"]) >= {
        "embeddings.npy differs from the checksum recorded at commit",
        "embeddings.npy has 2 row(s) with NaN or infinite values",
    }
    with pytest.raises(CollectionError, match="NaN"):  # `lab index` never calls these rows unchanged
        damaged.add(photo_folder, progress=False)
    assert_repaired(damaged, original)
    assert np.isfinite(Collection.open(col.root).similar(0, k=26)["score"]).all()


def judge_some(col, n=6):
    cats = [i for i, p in enumerate(col.paths) if label_of(p) == "cat"]
    for row in range(n):
        col.judge("cat", row, relevant=row in cats, user="tester")
    col.teach("kitty", cats[0])


def test_a_damaged_feedback_store_leaves_query_by_example_working(col, capsys):
    judge_some(col)
    store = col.root / "feedback.sqlite"
    data = bytearray(store.read_bytes())
    data[:100] = b"\xff" * 100  # the SQLite header
    store.write_bytes(bytes(data))
    reopened = Collection.open(col.root)
    assert len(reopened.similar(0, k=5)) == 5
    with pytest.raises(FeedbackStoreError, match=r"feedback store is damaged[\s\S]*lab repair -c"):
        reopened.search("cat")
    assert main(["search", "cat", "-c", str(col.root)]) == 2
    assert "lab repair" in capsys.readouterr().err
    report = reopened.check()
    assert not report.ok and report.problems["where"].tolist() == ["feedback"]
    repaired = reopened.repair(progress=False)
    assert repaired.feedback["lost_judgments"] == 6 and repaired.feedback["lost_examples"] == 1
    assert (col.root / repaired.feedback["moved_to"]).exists()  # the damaged file is kept
    fresh = Collection.open(col.root)
    assert fresh.check().ok and len(fresh.search("cat", k=3)) > 0 and len(fresh.judgments()) == 0


def test_a_partly_damaged_feedback_store_keeps_what_can_be_read(col):
    judge_some(col, n=20)
    store = col.root / "feedback.sqlite"
    with sqlite3.connect(store) as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        n_pages = db.execute("PRAGMA page_count").fetchone()[0]
    data = bytearray(store.read_bytes())
    data[(n_pages - 1) * page_size :] = b"\x00\x17" * (page_size // 2)  # the last page (recent rows)
    store.write_bytes(bytes(data))
    report = Collection.open(col.root).check()
    assert not report.ok and "feedback" in report.problems["where"].tolist()
    result = Collection.open(col.root).repair(progress=False).feedback
    assert result["judgments"] + result["lost_judgments"] == 20 and result["examples"] + result["lost_examples"] == 1
    assert result["judgments"] > 0  # rows on intact pages survive
    assert len(Collection.open(col.root).judgments()) == result["judgments"]


def test_a_feedback_store_cut_to_zero_bytes_is_reported(col):
    judge_some(col, n=5)
    assert json.loads((col.root / "feedback.count.json").read_text()) == {"judgments": 5, "examples": 1}
    (col.root / "feedback.sqlite").write_bytes(b"")
    reopened = Collection.open(col.root)
    assert len(reopened.similar(0, k=3)) == 3
    with pytest.raises(FeedbackStoreError, match=r"empty \(0 bytes\), so it holds 0 judgments but 5 were recorded"):
        reopened.search("cat")
    with pytest.raises(FeedbackStoreError):  # nothing is written over the evidence
        reopened.judge("cat", 0)
    assert (col.root / "feedback.sqlite").stat().st_size == 0
    assert "5 judgments lost" in str(reopened.check())
    result = reopened.repair(progress=False).feedback
    assert (result["judgments"], result["lost_judgments"], result["lost_examples"]) == (0, 5, 1)
    fresh = Collection.open(col.root)
    fresh.judge("cat", 0)
    assert len(fresh.judgments()) == 1 and fresh.check().ok


def test_a_deleted_feedback_store_is_reported_and_rebuilt(col):
    judge_some(col, n=5)
    (col.root / "feedback.sqlite").unlink()
    reopened = Collection.open(col.root)
    with pytest.raises(FeedbackStoreError, match="feedback.sqlite is missing, so it holds 0 judgments but 5 were recorded"):
        reopened.search("cat")
    report = reopened.repair(progress=False)
    assert report.feedback["lost_judgments"] == 5 and report.feedback["moved_to"] is None
    assert str(report).endswith("lost 5 judgments and 1 examples; there was no file to keep")
    assert Collection.open(col.root).check().ok


def _judge_rows(args):
    root, user, n = args
    col = Collection.open(root)
    for i in range(n):
        col.judge("parallel", i % len(col), relevant=i % 2 == 0, user=user)
    return n


def test_concurrent_writers_keep_the_count_exact(col):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        done = pool.map(_judge_rows, [(str(col.root), user, 150) for user in "abcd"])
    assert sum(done) == 600 and len(col.judgments("parallel")) == 600
    assert json.loads((col.root / "feedback.count.json").read_text())["judgments"] == 600
    assert col.check().ok


def test_a_reader_survives_reindex_and_compact_and_sees_new_images(col, tmp_path, photo_folder):
    old_chunk = only_chunk(col)
    reader = Collection.open(col.root)
    assert len(reader.similar(0, k=5)) == 5  # embeddings mapped; class probabilities not read yet
    new = varied_copies(photo_folder, tmp_path / "new", 3)  # crops of the first three photos
    writer = Collection.open(col.root)
    writer.add(tmp_path / "new", progress=False)
    writer.compact()
    assert not old_chunk.exists()  # the chunk the reader opened is gone
    nearest = reader.similar(str(new[0]), k=1, layer="output")  # reads arrays of the new chunk only
    assert nearest["path"].iloc[0] == str(sorted(photo_folder.glob("*.jpg"))[0])  # the photo it was cropped from
    assert len(reader) == 30 and set(map(str, new)) <= set(reader.paths)
    assert reader.similar(0, k=29)["path"].isin(list(map(str, new))).sum() == 3
    assert len(reader.search("cat", k=5)) > 0 and reader.info()["n_images"] == 30


def test_the_panel_shows_images_indexed_after_it_opened(col, tmp_path, photo_folder):
    from lab.panel import SearchPanel

    panel = SearchPanel(Collection.open(col.root), page_size=4, user="tester")
    panel.run_search("cat")
    new = varied_copies(photo_folder, tmp_path / "new", 4)
    writer = Collection.open(col.root)
    writer.add(tmp_path / "new", progress=False)
    writer.compact()
    results = panel.run_similar(str(new[0]))
    assert results["path"].iloc[0] == str(sorted(photo_folder.glob("*.jpg"))[0])
    assert results["path"].isin(list(map(str, new[1:]))).sum() == 3 and len(panel.collection) == 31
    shown = [panel.collection.paths[c.row] for c in panel.cards if c.row is not None]
    assert shown == results["path"].tolist()[:4]


def test_panel_judgments_follow_the_image_when_row_ids_shift(tmp_path, photo_folder):
    from lab.panel import SearchPanel

    folder = tmp_path / "photos"
    shutil.copytree(photo_folder, folder)
    Collection.open(tmp_path / "c", create=True).add(folder, progress=False)
    panel = SearchPanel(Collection.open(tmp_path / "c"), page_size=4, user="tester")
    panel.run_search("vehicle")
    card = next(c for c in panel.cards if c.row is not None and c.row > 0)
    shown, first = card.path, panel.collection.paths[0]
    assert first != shown and not first.endswith("coffee__coffee.jpg")
    # another process re-indexes the first image with new content: every later row id shifts by one
    shutil.copy(folder / "coffee__coffee.jpg", first)
    Collection.open(tmp_path / "c").add(folder, progress=False)
    panel.judge_slot(card.slot, True)
    assert panel.collection.judgments("vehicle")["path"].tolist() == [shown]
    assert panel.collection.paths.index(shown) == card.row - 1


def test_a_collection_from_before_checksums_still_opens_and_checks(col):
    manifest = json.loads((col.root / "manifest.json").read_text())
    del manifest["chunks"][0]["checksums"]
    (col.root / "manifest.json").write_text(json.dumps(manifest))
    old = Collection.open(col.root)
    assert len(old.similar(0, k=3)) == 3
    report = old.check()
    assert report.ok and report.problems["problem"].str.contains("no checksum recorded").all() and len(report.problems) == 1


def test_the_repair_command_named_in_a_message_can_be_pasted_into_a_shell(tmp_path):
    import shlex

    from lab.integrity import Problem, damage_message

    root = tmp_path / "my photos.lab"
    message = damage_message(root, [Problem("abc", "images.csv has 26 rows, the manifest lists 27")])
    command = message.split("run `", 1)[1].split("`", 1)[0]
    assert shlex.split(command) == ["lab", "repair", "-c", str(root)]
