"""Odd files in a folder being indexed, and odd outside images given to similar / teach.

Every case is made for real in the test (a non-UTF-8 file name, a symlink loop,
a FIFO, a symlink to /dev/zero, a 108 MP JPEG, an unreadable folder, ...), and
checked end to end: the run finishes, the good photos are indexed, and each odd
entry is reported under its own path with a reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

import lab.image_decoding as decoding
from lab import Collection
from lab.cli import main
from lab.image_decoding import ImageDecodeError, decode_image_with_size, read_image_file, scan_images

ROOT = Path(__file__).resolve().parents[1]
NON_UTF8_NAME = b"caf\xe9 \xff.jpg"  # Latin-1 and an invalid byte: not UTF-8


def _folder_with_photos(tmp_path: Path, photo_folder: Path, n: int = 3) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for source in sorted(photo_folder.glob("*.jpg"))[:n]:
        shutil.copy(source, folder / source.name)
    return folder


def _within(seconds: float, function, *args, **kwargs):
    """Run ``function`` in a thread; fail (instead of hanging the suite) if it takes longer than ``seconds``."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as err:  # re-raised below, in the test's thread
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{getattr(function, '__name__', function)} did not finish within {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _skipped(report) -> dict[str, str]:
    return {os.path.basename(item["path"]): item["reason"] for item in report.skipped}


def test_non_utf8_file_name_is_indexed_and_nothing_is_lost(tmp_path, photo_folder):
    folder = _folder_with_photos(tmp_path, photo_folder, n=5)
    odd = os.path.join(os.fsencode(folder), NON_UTF8_NAME)
    shutil.copy(photo_folder / "cat__chelsea.jpg", odd)
    col = Collection.open(tmp_path / "c", create=True)
    report = col.add(folder, chunk_size=2, progress=False)  # several chunks, merged: both CSV writers
    assert (report.added, report.failed, report.skipped) == (6, [], [])
    reopened = Collection.open(tmp_path / "c")
    assert len(reopened) == 6 and os.fsdecode(odd) in reopened.paths
    assert os.fsencode(reopened.paths[reopened.paths.index(os.fsdecode(odd))]) == odd  # the exact bytes
    again = reopened.add(folder, progress=False)
    assert (again.added, again.unchanged) == (0, 6)
    # the stored row is usable: found by path, judged, and printed with escapes
    row = reopened.row_of(os.fsdecode(odd))
    assert reopened.similar(os.fsdecode(odd), k=1)["path"].iloc[0].endswith("cat__chelsea.jpg")
    assert reopened.judge("cat", row) > 0
    assert reopened.judgments("cat")["path"].iloc[0].endswith("caf\\xe9 \\xff.jpg")


def test_symlink_loop_is_reported_and_the_rest_indexed(tmp_path, photo_folder):
    folder = _folder_with_photos(tmp_path, photo_folder)
    os.symlink("b.jpg", folder / "a.jpg")
    os.symlink("a.jpg", folder / "b.jpg")
    col = Collection.open(tmp_path / "c", create=True)
    report = col.add(folder, progress=False)
    assert report.added == 3 and report.failed == []
    assert _skipped(report) == {"a.jpg": "symlink loop", "b.jpg": "symlink loop"}
    assert "symlink loop" in str(report) and str(folder / "a.jpg") in str(report)
    with pytest.raises(ValueError, match="symlink loop"):
        read_image_file(folder / "a.jpg")


def test_fifo_and_dev_zero_are_skipped_without_being_opened(tmp_path, photo_folder):
    folder = _folder_with_photos(tmp_path, photo_folder)
    os.mkfifo(folder / "pipe.jpg")
    os.symlink("/dev/zero", folder / "zero.jpg")
    col = Collection.open(tmp_path / "c", create=True)
    report = _within(120, col.add, folder, progress=False)  # used to hang on the FIFO
    assert report.added == 3 and report.failed == []
    reasons = _skipped(report)
    assert reasons["pipe.jpg"].startswith("not a regular file (a FIFO)")
    assert reasons["zero.jpg"].startswith("not a regular file (a character device)")
    assert report.skipped_by_reason() == {reasons["pipe.jpg"]: 1, reasons["zero.jpg"]: 1}
    named = _within(60, col.add, [folder / "pipe.jpg", folder / "zero.jpg"], progress=False)  # named, not walked
    assert named.added == 0 and _skipped(named) == reasons


def test_outside_fifo_and_dev_zero_are_refused_as_queries(tmp_path, photo_collection):
    os.mkfifo(tmp_path / "pipe.jpg")
    os.symlink("/dev/zero", tmp_path / "zero.jpg")
    for path in (tmp_path / "pipe.jpg", tmp_path / "zero.jpg"):  # similar used to grow by 190 MB/s on /dev/zero
        with pytest.raises(ValueError, match="not a regular file"):
            _within(60, photo_collection.similar, path, k=3)
        with pytest.raises(ValueError, match="not a regular file"):
            _within(60, photo_collection.teach, "zero", path)
    assert "zero" not in set(photo_collection.terms().get("term", []))


def test_reads_are_capped_by_a_size_limit(tmp_path, photo_folder, photo_collection, monkeypatch):
    folder = _folder_with_photos(tmp_path, photo_folder)
    big = max(folder.iterdir(), key=lambda p: p.stat().st_size)
    monkeypatch.setattr(decoding, "MAX_FILE_BYTES", big.stat().st_size - 1)
    with pytest.raises(ImageDecodeError, match=r"file too large \([\d,]+ bytes; the limit is [\d,]+\)"):
        read_image_file(big)
    with pytest.raises(ValueError, match="file too large"):
        photo_collection.similar(big, k=3)
    report = Collection.open(tmp_path / "c", create=True).add(folder, progress=False)
    assert {os.path.basename(f["path"]): f["reason"].split(" (")[0] for f in report.failed} == {big.name: "file too large"}
    assert report.added == 2


@pytest.fixture(scope="module")
def jpeg_108mp(tmp_path_factory) -> Path:
    """A valid 12000 x 9000 JPEG: a real photo scaled up."""
    from skimage import data

    path = tmp_path_factory.mktemp("big") / "big_108mp.jpg"
    Image.fromarray(data.chelsea()).resize((12000, 9000), Image.BILINEAR).save(path, quality=80)
    return path


def test_108_megapixel_jpeg_decodes_in_draft_mode_and_is_indexed(tmp_path, jpeg_108mp, photo_collection):
    image, size = decode_image_with_size(jpeg_108mp, min_side=224)
    assert size == (12000, 9000)
    assert image.width * image.height <= 1500 * 1125 and min(image.size) >= 2 * 224  # draft at 1/8: 1.7 MP, not 108
    col = Collection.open(tmp_path / "c", create=True)
    report = col.add(jpeg_108mp, progress=False)
    assert (report.added, report.failed) == (1, [])
    assert tuple(col.images[["width", "height"]].iloc[0]) == (12000, 9000)
    # the big cat is the collection's own cat's nearest neighbour
    assert photo_collection.similar(jpeg_108mp, k=1)["path"].iloc[0].endswith("cat__chelsea.jpg")


def test_pixel_limit_applies_to_decoded_pixels_not_to_draft_jpegs(jpeg_108mp, monkeypatch):
    monkeypatch.setattr(decoding, "MAX_PIXELS", 100_000_000)  # below 108 MP
    assert decode_image_with_size(jpeg_108mp, min_side=224)[1] == (12000, 9000)  # 1.7 MP decoded
    with pytest.raises(ImageDecodeError, match="too many pixels to decode"):
        decode_image_with_size(jpeg_108mp)  # whole: 108 MP


def test_unknown_extension_and_dangling_symlink_are_reported_under_their_own_path(tmp_path, photo_folder):
    folder = _folder_with_photos(tmp_path, photo_folder)
    shutil.copy(photo_folder / "cat__chelsea.jpg", folder / "holiday.heic")
    (folder / "README").write_text("my photos")
    os.symlink(tmp_path / "moved-away.jpg", folder / "dangling.jpg")
    (folder / ".thumbnails").mkdir()
    shutil.copy(photo_folder / "cat__chelsea.jpg", folder / ".thumbnails" / "hidden.jpg")
    col = Collection.open(tmp_path / "c", create=True)
    report = col.add(folder, progress=False)
    assert report.added == 3 and report.failed == []
    assert report.skipped == [
        {"path": str(folder / "README"), "reason": "no file extension"},
        {"path": str(folder / "dangling.jpg"), "reason": "dangling symlink (its target does not exist)"},
        {"path": str(folder / "holiday.heic"), "reason": "unknown extension .heic"},
    ]
    assert "moved-away" not in str(report)


def test_a_long_list_of_skipped_files_is_shortened_in_text_but_not_in_json(tmp_path):
    from lab.collection import IndexReport

    (tmp_path / "notes").mkdir()
    for i in range(25):
        (tmp_path / "notes" / f"{i:02d}.txt").write_text("not a photo")
    os.symlink(tmp_path / "notes", tmp_path / "linked")
    report = IndexReport(skipped=scan_images(tmp_path).skipped)
    assert report.skipped_by_reason() == {"unknown extension .txt": 25, "symlink to a folder (not followed)": 1}
    text = str(report)
    assert "skipped 25: unknown extension .txt" in text and "... and 5 more (--json lists every one)" in text
    assert str(tmp_path / "notes" / "19.txt") in text and str(tmp_path / "notes" / "20.txt") not in text
    assert f"skipped 1: symlink to a folder (not followed)\n    {tmp_path / 'linked'}" in text
    assert len(report.to_dict()["skipped"]) == 26


def _skipped_by_scan(folder: Path) -> list[dict]:
    """``scan_images(folder).skipped``, by a process that permissions apply to.

    Root reads every folder, so as root the scan runs in a child process
    without the capabilities that override file permissions (util-linux
    ``setpriv``).
    """
    if os.geteuid() != 0:
        return scan_images(folder).skipped
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot make a folder unreadable")
    code = f"import json, lab.image_decoding as d; print(json.dumps(d.scan_images({str(folder)!r}).skipped))"
    command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-c", code]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return json.loads(subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout)


def test_unreadable_folder_is_reported(tmp_path, photo_folder):
    folder = _folder_with_photos(tmp_path, photo_folder)
    (folder / "private").mkdir()
    shutil.copy(photo_folder / "cat__chelsea.jpg", folder / "private" / "cat.jpg")
    os.chmod(folder / "private", 0)
    try:
        skipped = _skipped_by_scan(folder)
    finally:
        os.chmod(folder / "private", 0o755)
    assert skipped == [{"path": str(folder / "private"), "reason": "cannot read folder: Permission denied"}]


def test_cli_index_names_every_odd_file(tmp_path, photo_folder, capsys):
    folder = _folder_with_photos(tmp_path, photo_folder)
    shutil.copy(photo_folder / "cat__chelsea.jpg", os.path.join(os.fsencode(folder), NON_UTF8_NAME))
    os.mkfifo(folder / "pipe.jpg")
    os.symlink("a.jpg", folder / "a.jpg")
    shutil.copy(photo_folder / "cat__chelsea.jpg", folder / "photo.heic")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    assert main(["index", str(folder), "-c", str(tmp_path / "c"), "-q"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("added 4, unchanged 0, failed 1, skipped 3; 4 images in the collection")
    for line in ("failed: " + str(folder / "broken.png"), "skipped 1: symlink loop", "skipped 1: unknown extension .heic"):
        assert line in text
    for name in ("a.jpg", "pipe.jpg", "photo.heic"):
        assert f"    {folder / name}\n" in text + "\n"
    shutil.copy(photo_folder / "coffee__coffee.jpg", folder / "new.jpg")
    assert main(["index", str(folder), "-c", str(tmp_path / "c"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["added"], report["unchanged"]) == (1, 4)
    assert report["skipped_by_reason"] == {
        "not a regular file (a FIFO); not opened": 1,
        "symlink loop": 1,
        "unknown extension .heic": 1,
    }
    assert sorted(os.path.basename(item["path"]) for item in report["skipped"]) == ["a.jpg", "photo.heic", "pipe.jpg"]


@pytest.mark.slow
def test_decode_memory_is_bounded_whatever_the_number_of_threads():
    """Six 24 MP PNGs decoded by six threads at once: the budget keeps the peak near one image."""
    command = [sys.executable, str(ROOT / "scripts" / "bench_decode_memory.py"), "--json"]
    command += ["--megapixels", "24", "--copies", "6", "--workers", "6", "--budget-mb", "150"]
    result = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    bounded, unbounded = result["bounded"], result["unbounded"]
    assert bounded["decoded"] == unbounded["decoded"] == 6
    one_image_mb = 24e6 * 4 / 2**20  # Pillow holds RGB as 4 bytes a pixel: 92 MB
    assert bounded["peak_growth_mb"] < 150 + 50
    assert unbounded["peak_growth_mb"] > 3 * one_image_mb  # the measurement sees threads holding images
