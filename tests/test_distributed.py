"""Indexing on a Dask LocalCluster of 2 worker processes gives what one process gives, even when a worker dies."""

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from lab import Collection

from .conftest import varied_copies

distributed = pytest.importorskip("distributed")

LAB = [sys.executable, "-m", "lab.cli"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, photo_folder):
    """A single-process build of the photos (also puts the converted model in the lab home the workers inherit)."""
    col = Collection.open(tmp_path_factory.mktemp("single") / "photos", create=True)
    col.add(photo_folder, progress=False, chunk_size=5)
    return col


@pytest.fixture(scope="module")
def client(reference):
    from lab.distributed import cluster_client

    with cluster_client(n_workers=2) as client:
        yield client


def _exit_soon() -> None:
    """Kill this worker process (as a crash would: no clean-up) just after answering."""
    threading.Timer(0.05, os._exit, (1,)).start()


def _by_path(col: Collection):
    order = np.argsort(col.paths)
    return col.images.iloc[order].drop(columns="id").reset_index(drop=True), col.embeddings[order], col.class_probabilities[order]


@pytest.mark.slow
def test_cli_workers_build_the_same_features_as_one_process(tmp_path, photo_folder, reference):
    target = tmp_path / "photos"
    result = subprocess.run(
        LAB + ["index", str(photo_folder), "-c", str(target), "--workers", "2", "--chunk-size", "5", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["added"] == len(reference) and report["failed"] == []
    images, embeddings, probabilities = _by_path(Collection.open(target))
    ref_images, ref_embeddings, ref_probabilities = _by_path(reference)
    assert images.equals(ref_images)
    np.testing.assert_array_equal(embeddings, ref_embeddings)
    np.testing.assert_array_equal(probabilities, ref_probabilities)


@pytest.mark.slow
def test_a_worker_killed_mid_run_leaves_every_image_exactly_once(tmp_path, photo_folder, client):
    images = varied_copies(photo_folder, tmp_path / "images", 48)
    root = tmp_path / "col"
    col = Collection.open(root, create=True)
    outcome = {}

    def index():
        try:
            outcome["report"] = col.add(tmp_path / "images", client=client, chunk_size=3, progress=False)
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = err

    thread = threading.Thread(target=index)
    thread.start()
    deadline = time.time() + 120
    while not (root / "chunks").exists() and time.time() < deadline:
        time.sleep(0.02)
    assert thread.is_alive(), "the run finished before a worker could be killed"
    busy = [worker for worker, tasks in client.processing().items() if tasks]
    assert busy, "no worker had a task to lose"
    victim = busy[0]  # it dies holding a task, which Dask must run again elsewhere
    client.run(_exit_soon, workers=[victim])
    thread.join(timeout=300)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["report"].added == len(images) and outcome["report"].failed == []
    assert victim not in client.scheduler_info()["workers"]  # the nanny started a new worker process

    col = Collection.open(root)
    assert sorted(col.paths) == sorted(str(p) for p in images)  # every image, none twice
    assert col.embeddings.shape == (len(images), 1280)
    assert not np.isnan(np.asarray(col.embeddings, np.float32)).any()
    listed = {c["name"] for c in json.loads((root / "manifest.json").read_text())["chunks"]}
    assert {p.name for p in (root / "chunks").iterdir()} == listed  # abandoned attempts were cleaned up


def test_workers_that_cannot_see_the_files_are_named(tmp_path, client, reference):
    from tqdm import tqdm

    from lab import IndexReport
    from lab.distributed import ClusterError, extract_on_cluster

    missing = tmp_path / "only-on-another-machine" / "a.jpg"
    with pytest.raises(ClusterError, match="same paths.*shared filesystem.*cannot read .*a.jpg"):
        extract_on_cluster(reference, client, [missing], IndexReport(), tqdm(disable=True))


def test_wrong_scheduler_address_is_a_clear_error(tmp_path, photo_folder):
    result = subprocess.run(
        LAB + ["index", str(photo_folder), "-c", str(tmp_path / "c"), "--scheduler", "tcp://127.0.0.1:9"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "cannot reach a Dask scheduler at 'tcp://127.0.0.1:9'" in result.stderr
    assert "Traceback" not in result.stderr
