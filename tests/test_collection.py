"""The on-disk collection: growing, skipping, refusing, and never using pickle."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from lab import Collection, CollectionError
from lab.sample_images import label_of


def test_indexes_real_photos_and_reports_broken_files(tmp_path, messy_folder):
    col = Collection.open(tmp_path / "c", create=True)
    report = col.add(messy_folder, progress=False)
    reasons = {os.path.basename(item["path"]): item["reason"] for item in report.failed}
    assert set(reasons) == {"truncated.jpg", "empty.png", "notes.jpg", "garbage.png"}
    assert "empty" in reasons["empty.png"] and "not an image" in reasons["notes.jpg"]
    assert report.added == len(col) == report.total == 27
    assert col.embeddings.shape == (27, 1280) and col.class_probabilities.shape == (27, 1000)
    assert all(os.path.isabs(p) for p in col.paths)
    assert list(col.images.columns) == ["id", "path", "size", "mtime_ns", "sha256", "width", "height"]
    assert (col.images["width"] > 0).all() and col.images["sha256"].str.len().eq(64).all()


def test_rows_line_up_with_their_images(photo_collection):
    """Row i of the arrays belongs to path i: the cat's row says cat."""
    cats = {281, 282, 283, 284, 285}
    row = [i for i, p in enumerate(photo_collection.paths) if label_of(p) == "cat"][0]
    assert int(np.argmax(photo_collection.class_probabilities[row])) in cats
    hits = []
    for i, path in enumerate(photo_collection.paths):  # foolbox photos carry their ImageNet class
        label = label_of(path)
        if label.startswith("imagenet"):
            top5 = np.argsort(-photo_collection.class_probabilities[i].astype(np.float32))[:5]
            hits.append(int(label[len("imagenet"):]) in top5)
    # EfficientNet-Lite0's ImageNet top-5 accuracy is about 92%; shuffled rows would score ~0
    assert len(hits) == 20 and sum(hits) >= 16, hits


def test_adding_again_extracts_nothing(tmp_path, photo_folder):
    col = Collection.open(tmp_path / "c", create=True)
    col.add(photo_folder, progress=False)
    before = col.embeddings.copy()
    report = Collection.open(tmp_path / "c").add(photo_folder, progress=False)
    assert (report.added, report.unchanged) == (0, 27)
    np.testing.assert_array_equal(Collection.open(tmp_path / "c").embeddings, before)


def test_changed_and_copied_files(tmp_path, photo_folder):
    folder = tmp_path / "photos"
    shutil.copytree(photo_folder, folder)
    col = Collection.open(tmp_path / "c", create=True)
    col.add(folder, progress=False)
    cat_row = col.paths.index(str(folder / "cat__chelsea.jpg"))
    old_cat = col.embeddings[cat_row].copy()
    # the cat file now holds the coffee photo: content changed, same path
    shutil.copy(folder / "coffee__coffee.jpg", folder / "cat__chelsea.jpg")
    # a second copy of the flower under a new name: same bytes, new path
    shutil.copy(folder / "flower__flower.jpg", folder / "flower_copy.jpg")
    report = col.add(folder, progress=False)
    assert report.added == 2 and report.reused == 2 and report.unchanged == 26
    assert len(col) == 28 and len(set(col.paths)) == 28
    new_cat = col.embeddings[col.paths.index(str(folder / "cat__chelsea.jpg"))]
    coffee = col.embeddings[col.paths.index(str(folder / "coffee__coffee.jpg"))]
    assert not np.array_equal(new_cat, old_cat)
    np.testing.assert_array_equal(new_cat, coffee)
    reopened = Collection.open(tmp_path / "c")
    assert reopened.paths == col.paths and len(reopened.info()) > 0
    assert reopened.info()["n_chunks"] == 1  # superseded rows compacted away


def test_moved_and_deleted_photos_are_reported_and_pruned_with_their_judgments_kept(tmp_path, photo_folder, capsys):
    from lab.cli import main

    folder = tmp_path / "my photos"
    shutil.copytree(photo_folder, folder)
    (folder / "extra").mkdir()
    shutil.copy(folder / "flower__flower.jpg", folder / "extra" / "flower__again.jpg")
    col = Collection.open(tmp_path / "c", create=True)
    col.add(folder, progress=False)
    col.judge("cat", folder / "cat__chelsea.jpg", relevant=True, user="owner")
    (folder / "coffee__coffee.jpg").unlink()
    (folder / "cat__chelsea.jpg").rename(folder / "cat__renamed.jpg")
    shutil.rmtree(folder / "extra")  # a whole folder gone: kept unless --all (an unplugged drive looks the same)
    report = col.add(folder, progress=False)
    checked = col.check()  # not damage, but said
    assert checked.ok and "3 images' files are no longer on disk" in str(checked) and "note: images:" in str(checked)
    gone = sorted(str(folder / name) for name in ("cat__chelsea.jpg", "coffee__coffee.jpg"))
    assert report.missing == sorted(gone + [str(folder / "extra" / "flower__again.jpg")]) and len(col) == 29
    assert "3 images of the collection are no longer on disk" in str(report) and f"lab prune -c {tmp_path / 'c'} --dry-run" in str(report)
    assert main(["prune", "-c", str(tmp_path / "c"), "--dry-run"]) == 0 and len(Collection.open(tmp_path / "c")) == 29
    assert "would remove 2 of 29 images" in capsys.readouterr().out
    assert main(["prune", "-c", str(tmp_path / "c")]) == 0
    said = capsys.readouterr().out
    assert "removed 2 of 29 images" in said and "kept 1 whose folders are gone as well" in said
    pruned = Collection.open(tmp_path / "c")
    assert len(pruned) == 27 and set(gone).isdisjoint(pruned.paths) and pruned.missing_files()["folder_gone"].tolist() == [True]
    assert pruned.check().ok and len(pruned.similar(str(folder / "cat__renamed.jpg"), k=30)) == 26
    # the judgment is kept by content: the renamed cat is the judged image
    top = pruned.search("cat", k=1)
    assert top["path"].iloc[0] == str(folder / "cat__renamed.jpg") and len(pruned.judgments()) == 1
    assert main(["prune", "-c", str(tmp_path / "c"), "--all"]) == 0 and len(Collection.open(tmp_path / "c")) == 26
    assert main(["prune", "-c", str(tmp_path / "c")]) == 0 and "nothing to prune" in capsys.readouterr().out


def test_refuses_a_different_model(photo_collection):
    with pytest.raises(CollectionError, match="efficientnet-lite0.*resnet50|different model"):
        Collection.open(photo_collection.root, model="resnet50")


def test_open_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no collection"):
        Collection.open(tmp_path / "missing")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(CollectionError, match="not empty"):
        Collection.open(tmp_path / "full", create=True)
    with pytest.raises(ValueError, match="unknown model"):
        Collection.open(tmp_path / "new", create=True, model="vgg1")


def test_newer_schema_is_refused(tmp_path, photo_folder):
    col = Collection.open(tmp_path / "c", create=True)
    manifest = json.loads((col.root / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (col.root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CollectionError, match="schema version 99"):
        Collection.open(tmp_path / "c")


def test_no_pickle_anywhere_in_a_collection(photo_collection):
    for path in photo_collection.root.rglob("*"):
        if path.suffix == ".npy":
            np.load(path, allow_pickle=False)  # raises if the file needed pickle
        elif path.is_file():
            assert path.suffix in {".json", ".csv", ".sqlite", ".sqlite-wal", ".sqlite-shm", ""}, path
            assert b"\x80\x04\x95" not in path.read_bytes()[:3]


def test_manifest_records_model_and_schema(photo_collection):
    info = photo_collection.info()
    assert info["model"] == "efficientnet-lite0" and info["schema_version"] == 1
    assert info["embedding_size"] == 1280 and len(info["weights_checksum"]) == 64
    assert info["n_images"] == len(photo_collection)


def test_empty_collection_has_empty_arrays(tmp_path):
    col = Collection.open(tmp_path / "empty", create=True)
    assert len(col) == 0 and col.embeddings.shape == (0, 1280) and col.paths == []


def test_a_second_writer_is_told_to_wait(tmp_path, photo_folder):
    import fcntl

    col = Collection.open(tmp_path / "c", create=True)
    with open(col.root / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(CollectionError, match="another process"):
            col.add(photo_folder, progress=False)


def test_compact_merges_segments_into_one_memory_map(tmp_path, photo_folder):
    col = Collection.open(tmp_path / "c", create=True)
    files = sorted(photo_folder.iterdir())
    for start in range(0, len(files), 9):  # three runs: three segments
        col.add(files[start : start + 9], progress=False)
    assert col.info()["n_chunks"] == 3
    before = (col.paths, col.embeddings.copy())
    col.compact()
    after = Collection.open(tmp_path / "c")
    assert after.info()["n_chunks"] == 1 and isinstance(after.embeddings, np.memmap)
    assert after.paths == before[0]
    np.testing.assert_array_equal(after.embeddings, before[1])
    assert len(list((tmp_path / "c" / "chunks").iterdir())) == 1


def test_a_search_session_open_while_the_collection_is_pruned_shows_no_image_twice(tmp_path, photo_folder):
    from lab.session import SearchSession

    folder = tmp_path / "photos"
    shutil.copytree(photo_folder, folder)
    col = Collection.open(tmp_path / "c", create=True)
    col.add(folder, progress=False)
    session = SearchSession(col, "qqzz", page_size=8)  # a word nobody taught: pages of images to judge
    first = session.next_page()["path"].tolist()
    assert len(first) == 8
    elsewhere = Collection.open(tmp_path / "c")  # another process, say the command line
    Path(elsewhere.paths[0]).unlink()  # row 0 goes: every later row id shifts down by one
    assert elsewhere.prune()["removed"].tolist() == [True]
    later = [path for _ in range(3) for path in session.next_page()["path"]]
    assert len(later) == 18 and not set(later) & set(first) and len(set(later)) == 18  # 26 images left, 8 shown before
