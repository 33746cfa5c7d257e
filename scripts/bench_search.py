"""Benchmark search at scale: memory, build time, latencies and recall at several sizes, and the 10M projection.

    flock /tmp/lab-heavy.lock python scripts/bench_search.py --n 1000000 --n 3000000 \
        --workdir /work/scratch/bench_search [--reuse] [--source caltech101.lab]

For each ``--n`` a collection of that many images is made from the real
Caltech-101 features (indexed once into the work dir unless ``--source``
names a collection): each synthetic row is a real image's embedding and
class probabilities with a little noise, so the vectors keep the cluster
structure of real photos (``--reuse`` keeps one made by an earlier run).
Each size is measured in a fresh process, as a user opens it: resident
memory after each part is built (the process's own and mapped file pages),
peak, build seconds, median ms of keyword search, query by example for each
metric, and judge + refit + search, and recall@10 of every metric's index
against exact search. Writes ``results/bench_search_<n>.md`` for each size
and, given two sizes or more, ``results/bench_search_scaling.md``: the
curve, the memory per million rows fitted to it and the projection to 10
million rows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab import Collection  # noqa: E402
from lab.benchmarking import OwnMemoryPeak, median_ms, memory_mb  # noqa: E402
from lab.installed import versions_line  # noqa: E402
from lab.neighbors import METRICS  # noqa: E402

TARGET_MS = 50
TARGET_GB_AT_1M = 2.0
TARGET_GB_PER_M = 1.5
RECALL_QUERIES = {"cosine": 200, "euclidean": 200, "manhattan": 50}  # exact L1 has no matrix-product shortcut


def synthetic_collection(source: Collection, target: Path, n: int) -> Collection:
    """``n`` rows drawn (seeded) from ``source``'s with 5% multiplicative noise, committed as one chunk."""
    import shutil

    shutil.rmtree(target, ignore_errors=True)  # always from scratch
    rng = np.random.default_rng(0)
    col = Collection.open(target, create=True)
    step = 50_000
    embeddings_src = np.asarray(source.embeddings, np.float32)
    probabilities_src = np.asarray(source.class_probabilities, np.float32)
    for start in range(0, n, step):
        m = min(step, n - start)
        picks = rng.integers(0, len(source), m)
        embeddings = embeddings_src[picks] * rng.normal(1.0, 0.05, (m, embeddings_src.shape[1])).astype(np.float32)
        probabilities = probabilities_src[picks] * rng.uniform(0.8, 1.2, (m, 1000)).astype(np.float32)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        images = pd.DataFrame(
            {
                "path": [f"/synthetic/{start + i:08d}.jpg" for i in range(m)],
                "size": 0, "mtime_ns": 0,
                "sha256": [f"{start + i:064x}" for i in range(m)],
                "width": 0, "height": 0,
            }
        )
        col.add_features(images, embeddings, probabilities)
    col.compact()  # one segment: the arrays are plain memory maps
    return Collection.open(target)


def exact_top(stored: np.ndarray, queries: np.ndarray, k: int, metric: str) -> np.ndarray:
    """Exact top-k rows of a (memory-mapped) matrix for each query, in blocks: no float32 copy of it."""
    from sklearn.metrics import pairwise_distances

    from lab.vectors import row_blocks, unit_rows

    q = unit_rows(queries) if metric == "cosine" else np.asarray(queries, np.float32)
    best = np.full((len(q), k), np.inf)
    best_rows = np.zeros((len(q), k), np.int64)
    for start, block in row_blocks(stored, 50_000):
        if metric == "cosine":
            distances = 1.0 - q @ unit_rows(block).T
        else:
            distances = pairwise_distances(q, block, metric=metric)
        both = np.hstack([best, distances])
        both_rows = np.hstack([best_rows, np.broadcast_to(np.arange(start, start + len(block)), distances.shape)])
        top = np.argsort(both, axis=1, kind="stable")[:, :k]
        best, best_rows = np.take_along_axis(both, top, axis=1), np.take_along_axis(both_rows, top, axis=1)
    return best_rows


def memory_row(part: str, seconds: float, own_peak: float) -> dict:
    m = memory_mb()
    return {"part": part, "seconds": round(seconds, 1), "resident_mb": m.get("VmRSS"), "own_mb": m.get("RssAnon"), "file_mb": m.get("RssFile"),
            "own_peak_mb": own_peak}


def measure(path: Path, repeats: int) -> dict:
    """Everything measured on one collection, in this process (which should have opened nothing else)."""
    for name in ("feedback.sqlite", "feedback.sqlite-wal", "feedback.sqlite-shm", "feedback.count.json"):
        (path / name).unlink(missing_ok=True)  # judgments of an earlier run (a synthetic collection: nobody's)
    started = time.perf_counter()
    col = Collection.open(path)
    n = len(col)
    rng = np.random.default_rng(1)
    memory = [memory_row("collection opened, image table read", time.perf_counter() - started, memory_mb().get("RssAnon"))]

    def built(part, build):
        start = time.perf_counter()
        with OwnMemoryPeak() as peak:
            build()
        memory.append(memory_row(part, time.perf_counter() - start, peak.mb))

    words = ["dog", "car", "airplane", "butterfly", "piano", "vehicle"]
    built("keyword search ready (scoring space, class matrix, exploration groups)", lambda: col.search("dog", k=20))
    latency = {"keyword search, page of 20": median_ms(lambda: col.search(words[rng.integers(len(words))], k=20), repeats)}
    algorithm = {}
    for metric in ("cosine", "manhattan", "euclidean"):  # the first two are "both indexes"
        built(f"{metric} index built", lambda: col.similar(0, k=20, metric=metric))
        latency[f"similar images, {metric}"] = median_ms(lambda: col.similar(int(rng.integers(n)), k=20, metric=metric), repeats)
        algorithm[metric] = col.similar(0, k=1, metric=metric).attrs["algorithm"]
    counter = iter(range(10**9))

    def judge_and_search():
        # alternate relevant / not relevant, so the word soon has both and its model is the full one (logistic part included)
        turn = next(counter)
        col.judge("bench word", int(rng.integers(n)), relevant=turn % 2 == 0, user=f"u{turn}")
        col.search("bench word", k=20)

    latency["judge one image, refit the word, search it again"] = median_ms(judge_and_search, repeats)
    memory.append(memory_row("after the judgments", 0.0, memory_mb().get("RssAnon")))
    recall = {}
    for metric in METRICS:  # what col.similar answers (the query's own row left out) against exact search
        queries_rows = np.sort(rng.choice(n, RECALL_QUERIES[metric], replace=False))
        exact = exact_top(col.embeddings, np.asarray(col.embeddings[queries_rows], np.float32), 11, metric)
        hits = []
        for row, truth in zip(queries_rows, exact):
            truth = [r for r in truth if r != row][:10]
            found = col.similar(int(row), k=10, metric=metric)["id"].to_numpy()
            hits.append(len(set(found) & set(truth)) / 10)
        recall[metric] = float(np.mean(hits))
    disk = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    return {"n": n, "memory": memory, "latency_ms": latency, "algorithm": algorithm, "recall": recall, "disk_bytes": disk}


def size_report(result: dict, command: str) -> str:
    n = result["n"]
    lines = [
        f"# Search benchmark at {n:,} images",
        "",
        f"Command: `{command}` (a run over several sizes also writes the curve, `bench_search_scaling.md`).",
        "",
        versions_line(),
        "",
        "Synthetic rows drawn from real Caltech-101 features with noise; model efficientnet-lite0 (1280-d); 2 shared cores; "
        "measured in a fresh process.",
        "",
        "| operation | median ms | target |",
        "|---|---:|---:|",
    ]
    lines += [f"| {op} | {ms:.1f} | {TARGET_MS} |" for op, ms in result["latency_ms"].items()]
    lines += ["", "| metric | index | recall@10 against exact | queries |", "|---|---|---:|---:|"]
    lines += [f"| {m} | {result['algorithm'][m]} | {r:.4f} | {RECALL_QUERIES[m]} |" for m, r in result["recall"].items()]
    lines += [
        "",
        "Memory (MB) after each part is built: resident = the process's own + pages of mapped collection files it holds "
        "(which the kernel can drop); own peak = the highest of the process's own memory while that part was built "
        "(sampled every 20 ms); seconds = time to build that part.",
        "",
        pd.DataFrame(result["memory"]).to_markdown(index=False, floatfmt=".0f"),
        "",
        f"Disk: {result['disk_bytes'] / 1e9:.2f} GB ({result['disk_bytes'] / n * 1e6 / 1e9:.2f} GB per million rows).",
    ]
    return "\n".join(lines) + "\n"


def resident_with_both(result: dict) -> float:
    """Resident MB once keyword search and the cosine and manhattan indexes are built."""
    return next(row["resident_mb"] for row in result["memory"] if row["part"] == "manhattan index built")


def scaling_report(results: list[dict], command: str) -> str:
    sizes = np.array([r["n"] for r in results], float) / 1e6
    rows = []
    for r in results:
        both = resident_with_both(r)
        rows.append(
            {
                "rows": f"{r['n']:,}",
                "resident MB, keyword + cosine + manhattan": f"{both:.0f}",
                "resident MB, all three indexes": f"{r['memory'][-1]['resident_mb']:.0f}",
                "own MB (all three)": f"{r['memory'][-1]['own_mb']:.0f}",
                "own peak MB while building": f"{max(m['own_peak_mb'] for m in r['memory']):.0f}",
                "build s (keyword + 3 indexes)": f"{sum(m['seconds'] for m in r['memory'][1:5]):.0f}",
                **{f"{op} ms": f"{ms:.1f}" for op, ms in r["latency_ms"].items()},
                **{f"recall@10 {m} ({r['algorithm'].get(m, '')})": f"{rec:.4f}" for m, rec in r["recall"].items()},
                "disk GB": f"{r['disk_bytes'] / 1e9:.2f}",
            }
        )
    table = pd.DataFrame(rows)
    lines = [
        "# Search at scale: the memory curve and the 10-million-row projection",
        "",
        f"Command: `{command}`",
        "",
        versions_line(),
        "",
        "Each size measured in a fresh process (synthetic rows from real Caltech-101 features, see `scripts/bench_search.py`); "
        "per-size details in `bench_search_<n>.md`.",
        "",
        table.set_index("rows").T.to_markdown(disable_numparse=True),
        "",
    ]
    if len(results) >= 2:
        for label, values in (
            ("keyword search + cosine and manhattan indexes", np.array([resident_with_both(r) for r in results])),
            ("all three indexes", np.array([r["memory"][-1]["resident_mb"] for r in results])),
            ("the process's own, peak while building", np.array([max(m["own_peak_mb"] for m in r["memory"]) for r in results])),
        ):
            slope, intercept = np.polyfit(sizes, values, 1)
            at_10m = intercept + slope * 10
            lines.append(
                f"- Resident memory, {label}: {slope / 1024:.2f} GB per million rows + {intercept / 1024:.2f} GB "
                f"(line through the measured sizes); projected at 10M rows: **{at_10m / 1024:.1f} GB**."
            )
        disk_slope = np.polyfit(sizes, [r["disk_bytes"] / 1e9 for r in results], 1)[0]
        lines.append(f"- Disk: {disk_slope:.2f} GB per million rows; 10M rows: {disk_slope * 10:.0f} GB.")
        lines.append(
            f"- Targets: <= {TARGET_GB_AT_1M} GB at 1M with both indexes, <= {TARGET_GB_PER_M} GB per million rows, "
            f"each latency <= {TARGET_MS} ms, recall@10 >= 0.99."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, action="append", help="collection size (repeatable; default 100,000)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--source", default=None, help="an existing Caltech-101 collection to draw features from")
    parser.add_argument("--reuse", action="store_true", help="keep a synthetic collection of the right size made by an earlier run")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # internal: measure one collection, print JSON
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure), args.repeats)))
        return
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="lab-bench-search-"))
    command = "python scripts/bench_search.py " + " ".join(sys.argv[1:])
    source = None
    results = []
    for n in args.n or [100_000]:
        path = workdir / f"synthetic-{n}.lab"
        if not (args.reuse and path.exists() and len(Collection.open(path)) == n):
            if source is None:
                if args.source:
                    source = Collection.open(args.source)
                else:
                    from lab.datasets import indexed_dataset

                    source, _ = indexed_dataset("caltech101", workdir)
            synthetic_collection(source, path, n)
        out = subprocess.run(
            [sys.executable, __file__, "--measure", str(path), "--repeats", str(args.repeats)], check=True, capture_output=True, text=True
        ).stdout
        result = json.loads(out.strip().splitlines()[-1])
        results.append(result)
        text = size_report(result, command)
        print(text)
        (ROOT / "results" / f"bench_search_{n}.md").write_text(text)
    if len(results) >= 2:  # a curve needs two sizes; one size leaves the last curve as it was
        text = scaling_report(results, command)
        print(text)
        (ROOT / "results" / "bench_search_scaling.md").write_text(text)
        (ROOT / "results" / "bench_search_scaling.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
