"""The command line and the original system's three scripts, run as a user runs them."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
LAB = [sys.executable, "-m", "lab.cli"]


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=ROOT, **kwargs)


def test_index_json_then_info(tmp_path, messy_folder):
    result = run(LAB + ["index", str(messy_folder), "-c", str(tmp_path / "c"), "--json"])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) >= {"added", "unchanged", "failed", "total"}
    assert report["added"] == report["total"] == 27 and len(report["failed"]) == 4
    assert all(set(item) == {"path", "reason"} for item in report["failed"])

    info = run(LAB + ["info", "-c", str(tmp_path / "c"), "--json"])
    assert json.loads(info.stdout)["n_images"] == 27

    # a word with no feedback has no learned score: null, not NaN (which JSON parsers in browsers refuse)
    search = run(LAB + ["search", "cat", "-c", str(tmp_path / "c"), "--json", "-k", "3"])
    assert search.returncode == 0, search.stderr
    results = json.loads(search.stdout, parse_constant=lambda constant: pytest.fail(f"{constant} in the JSON"))["results"]
    assert len(results) >= 1 and all(result["learned"] is None for result in results)


def test_cli_errors_are_one_clear_line(tmp_path):
    result = run(LAB + ["info", "-c", str(tmp_path / "nothing")])
    assert result.returncode == 2
    assert "no collection" in result.stderr and "Traceback" not in result.stderr


def test_original_scripts_keep_their_command_lines(tmp_path, photo_folder):
    out = run([sys.executable, "scripts/get_inception_output.py", str(photo_folder), str(tmp_path / "output")])
    assert out.returncode == 0, out.stderr
    transfer = run([sys.executable, "scripts/get_transfer_layer.py", str(photo_folder), str(tmp_path / "transfer")])
    assert transfer.returncode == 0, transfer.stderr
    probabilities = np.load(tmp_path / "output" / "class_probabilities.npy", allow_pickle=False)
    embeddings = np.load(tmp_path / "transfer" / "embeddings.npy", allow_pickle=False)
    names = pd.read_csv(tmp_path / "transfer" / "image_names.csv")["image"]
    assert probabilities.shape == (27, 1000) and embeddings.shape == (27, 1280) and len(names) == 27

    dist = run([sys.executable, "scripts/compute_distances.py", str(tmp_path / "transfer" / "embeddings.npy"), str(tmp_path / "nn"), "cosine", "5", "-1"])
    assert dist.returncode == 0, dist.stderr
    neighbors = np.load(tmp_path / "nn" / "neighbors.npy", allow_pickle=False)
    distances = np.load(tmp_path / "nn" / "distances.npy", allow_pickle=False)
    assert neighbors.shape == distances.shape == (27, 5)
    assert not (neighbors == np.arange(27)[:, None]).any()  # an image is not its own neighbour
    assert (np.diff(distances, axis=1) >= -1e-6).all()

    # same as scikit-learn directly
    from sklearn.metrics import pairwise_distances

    full = pairwise_distances(embeddings, metric="cosine")
    np.fill_diagonal(full, np.inf)
    np.testing.assert_allclose(distances, np.sort(full, axis=1)[:, :5], atol=1e-5)
    assert (tmp_path / "nn" / "image_names.csv").exists()


@pytest.mark.slow
def test_report_on_an_empty_collection_names_the_notebook_that_failed(tmp_path):
    result = run(LAB + ["report", "-c", str(tmp_path / "empty"), "--out", str(tmp_path / "report")])
    assert result.returncode == 2
    assert "lab report: error: notebook 02_explore_embeddings.ipynb failed (ValueError: a map needs at least 3 images)" in result.stderr
    assert (tmp_path / "report" / "01_build_a_collection.html").exists()


def test_indexing_a_missing_folder_leaves_no_empty_collection_and_an_empty_one_is_named(tmp_path, capsys):
    from lab import Collection
    from lab.cli import main
    from lab.evaluation import evaluate

    assert main(["index", str(tmp_path / "no such folder"), "-c", str(tmp_path / "c.lab")]) == 2
    assert "no such file or folder" in capsys.readouterr().err and not (tmp_path / "c.lab").exists()
    empty = Collection.open(tmp_path / "empty.lab", create=True)
    with pytest.raises(ValueError, match="is empty: index images into it first"):
        evaluate(empty, pd.Series(dtype=str), progress=False)
    # searching it is a mistake, not a query with no match: an error status, as for any other command
    for command in (["search", "dog"], ["similar", "0"]):
        assert main(command + ["-c", str(tmp_path / "empty.lab")]) == 2
        assert f"lab {command[0]}: error: the collection {tmp_path / 'empty.lab'} is empty: index images into it first (lab index FOLDER -c" in capsys.readouterr().err
