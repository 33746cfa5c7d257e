"""An indexing run killed with SIGKILL resumes without redoing finished chunks."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import Collection

from .conftest import varied_copies

LAB = [sys.executable, "-m", "lab.cli"]


def _listed_rows(collection: Path) -> int:
    try:
        manifest = json.loads((collection / "manifest.json").read_text())
    except (FileNotFoundError, ValueError):
        return 0
    return sum(c["rows"] for c in manifest["chunks"])


@pytest.mark.slow
def test_kill_minus_nine_then_resume(tmp_path, photo_folder):
    images = varied_copies(photo_folder, tmp_path / "images", 240)
    collection = tmp_path / "col"
    command = LAB + ["index", str(tmp_path / "images"), "-c", str(collection), "--chunk-size", "20", "--batch-size", "10", "--json"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while _listed_rows(collection) < 60 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = _listed_rows(collection)
    assert 60 <= done < len(images)

    # the killed collection opens, consistent: whole chunks only, no duplicates
    col = Collection.open(collection)
    assert len(col) == done == len(set(col.paths)) == col.embeddings.shape[0]

    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["unchanged"] == done
    assert report["added"] == len(images) - done
    assert report["total"] == len(images) and report["failed"] == []

    col = Collection.open(collection)
    assert sorted(col.paths) == sorted(str(p) for p in images)
    assert not (collection / "tmp").exists()
    listed = {c["name"] for c in json.loads((collection / "manifest.json").read_text())["chunks"]}
    assert {p.name for p in (collection / "chunks").iterdir()} == listed
