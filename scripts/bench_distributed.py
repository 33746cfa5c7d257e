"""Benchmark indexing on Dask: one process vs a LocalCluster of single-thread workers, and a projection.

    python scripts/bench_distributed.py [--limit 2000] [--workers 2] [--workdir DIR]

Indexes the same Caltech-101 files (LiteRT runtime) twice in one run, each into
a new collection: with ``Collection.add`` in this process (network on all
cores), and with ``Collection.add(client=...)`` on a ``LocalCluster`` of
``--workers`` single-thread worker processes (network threads = cores /
workers). Writes ``results/bench_distributed.md`` with the ratio and a table
projecting hours for 1M and 10M images on N machines of C cores, from the
measured images per second per core of the one-process run, assuming linear
scaling (each machine extracts its own shards; the client only lists chunks).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab import Collection  # noqa: E402
from lab.datasets import read_labels_csv, unpack_dataset  # noqa: E402
from lab.distributed import cluster_client  # noqa: E402
from lab.models.litert import default_threads  # noqa: E402


def index_once(files, root: Path, client=None) -> float:
    shutil.rmtree(root, ignore_errors=True)
    col = Collection.open(root, create=True)
    col.backbone  # loaded (and converted) before timing
    start = time.perf_counter()
    report = col.add(files, client=client, progress=True)
    elapsed = time.perf_counter() - start
    assert report.added + len(report.failed) == len(files), report
    return report.added / elapsed


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=2000, help="Caltech-101 images indexed by each run")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the LocalCluster")
    parser.add_argument("--workdir", default=None, help="where to unpack and index (default a temp dir)")
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="lab-bench-"))
    folder = unpack_dataset("caltech101", workdir / "data")
    files = read_labels_csv(folder / "labels.csv")["path"].tolist()
    files = [files[i] for i in np.random.default_rng(0).permutation(len(files))][: args.limit]
    cores = default_threads()
    load_start = ", ".join(f"{x:.1f}" for x in os.getloadavg())

    one = index_once(files, workdir / "one.lab")
    with cluster_client(n_workers=args.workers) as client:
        index_once(files[:64], workdir / "warm.lab", client)  # workers load the model once, before timing
        cluster = index_once(files, workdir / "cluster.lab", client)
    per_core = one / cores

    lines = [
        "# Distributed indexing benchmark",
        "",
        f"Command: `python scripts/bench_distributed.py {' '.join(sys.argv[1:])}`",
        "",
        f"Machine: {cores} cores, shared (load average at start: {load_start}); efficientnet-lite0 on LiteRT; {len(files)} Caltech-101 files per run.",
        "",
        "| run | images/s | ratio |",
        "|---|---:|---:|",
        f"| one process (`Collection.add`, network on {cores} threads) | {one:.1f} | 1.00 |",
        f"| LocalCluster of {args.workers} single-thread worker processes (`Collection.add(client=...)`) | {cluster:.1f} | {cluster / one:.2f} |",
        "",
        f"On one machine the cluster cannot beat one process: both use the same {cores} cores, and the workers "
        "add process start, task scheduling and a model per process. The cluster pays off across machines.",
        "",
        f"## Projection from {per_core:.1f} images/s per core (the one-process run / {cores} cores), linear in machines",
        "",
        "| machines x cores | 1M images | 10M images |",
        "|---|---:|---:|",
    ]
    for machines, machine_cores in [(1, 2), (1, 8), (1, 32), (4, 32), (16, 32)]:
        rate = per_core * machines * machine_cores
        lines.append(f"| {machines} x {machine_cores} | {_duration(1e6 / rate)} | {_duration(1e7 / rate)} |")
    mean_kb = np.mean([os.path.getsize(p) for p in files]) / 1024
    lines += [
        "",
        f"Assumes the files are on a shared filesystem that feeds every core: these average {mean_kb:.0f} KB, so "
        f"16 x 32 cores would read {per_core * 16 * 32 * mean_kb / 1024:.0f} MB/s; larger photos cost more decoding per image than Caltech's.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "results" / "bench_distributed.md"
    out.write_text(text)
    print("wrote", out.relative_to(ROOT))


if __name__ == "__main__":
    main()
