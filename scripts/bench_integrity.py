"""What integrity costs: concurrent judgments (with the count kept beside the store), opening, re-indexing, check.

    flock /tmp/lab-heavy.lock python scripts/bench_integrity.py --collection /work/cache/caltech101.lab \\
        --baseline-ref 199fb74 --out results/bench_integrity.md

Each measurement runs with the ``lab`` package of ``--baseline-ref`` (extracted
with ``git archive``) and with the current one, side by side in one run, on
copies of ``--collection``; the table gives both and their ratio.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _judge(args):
    root, user, n = args
    import numpy as np

    from lab.feedback import FeedbackStore

    store = FeedbackStore(Path(root) / "feedback.sqlite", 1280)
    vector = np.ones(1280, np.float32)
    for i in range(n):
        store.add_judgment("parallel", f"{i:064x}", f"/image/{i}", i % 2 == 0, user, vector)
    return n


def measure(collection: Path, workers: int, per_worker: int) -> dict:
    """Timings (seconds) with whatever ``lab`` is importable."""
    from lab import Collection

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "col.lab"
        shutil.copytree(collection, root)
        start = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            pool.map(_judge, [(str(root), f"user{w}", per_worker) for w in range(workers)])
        out["judgments_s"] = time.perf_counter() - start
        col = Collection.open(root)
        out["judgments_kept"] = len(col.judgments("parallel"))
        start = time.perf_counter()
        col = Collection.open(root)
        col.similar(0, k=10)
        out["open_and_similar_s"] = time.perf_counter() - start
        start = time.perf_counter()
        # re-index with nothing new: what remains is bookkeeping (and, now, verifying checksums)
        col.add([col.paths[0]], progress=False)
        out["reindex_unchanged_s"] = time.perf_counter() - start
        if hasattr(col, "check"):
            start = time.perf_counter()
            col.check()
            out["check_s"] = time.perf_counter() - start
    return out


def _with_checksums(collection: Path, target: Path) -> Path:
    """A copy whose chunks are rewritten as one that records checksums (the baseline ignores them)."""
    from lab.chunks import Chunk, atomic_write_json, merge_chunks

    shutil.copytree(collection, target)
    manifest = json.loads((target / "manifest.json").read_text())
    chunks = [Chunk(target / "chunks" / c["name"], c["rows"]) for c in manifest["chunks"]]
    merged = merge_chunks(target, chunks)
    atomic_write_json(target / "manifest.json", dict(manifest, chunks=[merged.entry()]))
    for chunk in chunks:
        shutil.rmtree(chunk.folder)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", type=Path, required=True)
    parser.add_argument("--baseline-ref", required=True)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--per-worker", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.collection, args.workers, args.per_worker)))
        return 0
    from lab.benchmarking import baseline_package, publish

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = _with_checksums(args.collection, Path(tmp) / "prepared.lab")
        for label, path in (("baseline", baseline_package(args.baseline_ref, Path(tmp) / "baseline")), ("current", str(ROOT))):
            command = [sys.executable, __file__, "--measure", "--collection", str(prepared), "--baseline-ref", args.baseline_ref,
                       "--workers", str(args.workers), "--per-worker", str(args.per_worker)]
            done = subprocess.run(command, env=dict(os.environ, PYTHONPATH=path), check=True, capture_output=True, text=True)
            results[label] = json.loads(done.stdout.strip().splitlines()[-1])
    n = json.loads((args.collection / "manifest.json").read_text())["chunks"]
    command = " ".join(["python scripts/bench_integrity.py"] + sys.argv[1:])
    lines = [f"<!-- written by: {command} -->", f"# Integrity costs ({sum(c['rows'] for c in n):,} images; {args.workers} x {args.per_worker} judgments)", "",
             f"| measure | baseline ({args.baseline_ref}) | current | current / baseline |", "|---|---|---|---|"]
    for key in ("judgments_s", "judgments_kept", "open_and_similar_s", "reindex_unchanged_s", "check_s"):
        base, cur = results["baseline"].get(key), results["current"].get(key)
        ratio = f"{cur / base:.2f}" if base and cur is not None and key.endswith("_s") else ""
        fmt = (lambda v: "-" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v))
        lines.append(f"| {key} | {fmt(base)} | {fmt(cur)} | {ratio} |")
    publish("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
