"""Approximate nearest neighbours on real embeddings: lab's index, faiss HNSW, annoy, sklearn brute force.

    flock /tmp/lab-heavy.lock python scripts/bench_neighbors.py \
        --collection /work/cache/caltech101.lab --collection CIFAR10.lab [--queries 1000]

The rows of every ``--collection`` (real efficientnet-lite0 embeddings) are
pooled; ``--queries`` of them are drawn at random, half are held out of the
index (queries from outside the collection) and half stay in it. Ground
truth is scikit-learn's brute-force ``NearestNeighbors``; each method is timed
one query at a time (median ms, one faiss thread) and scored by recall@10
against that truth, side by side in one run. Writes
``results/bench_neighbors.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab import Collection  # noqa: E402
from lab.neighbors import NeighborIndex  # noqa: E402

K = 10


def per_query_ms(search, queries: np.ndarray) -> tuple[float, np.ndarray]:
    """Median wall time of one-query searches and the (n_queries, K) indices found."""
    search(queries[:1])  # warm-up
    found, times = [], []
    for q in queries:
        start = time.perf_counter()
        found.append(np.asarray(search(q[None, :])).reshape(-1)[:K])
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), np.stack(found)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", action="append", required=True, help="a .lab collection (repeatable)")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--out", default=str(ROOT / "results" / "bench_neighbors.md"))
    args = parser.parse_args()

    import faiss
    from sklearn.neighbors import NearestNeighbors

    faiss.omp_set_num_threads(1)
    disk = sum(f.stat().st_size for p in args.collection for f in Path(p).rglob("*") if f.is_file())
    pooled = np.concatenate([np.asarray(Collection.open(p).embeddings, np.float32) for p in args.collection])
    rng = np.random.default_rng(0)
    picks = rng.choice(len(pooled), args.queries, replace=False)
    outside = picks[: args.queries // 2]
    keep = np.setdiff1d(np.arange(len(pooled)), outside)
    data = pooled[keep]
    queries = np.concatenate([pooled[outside], pooled[picks[args.queries // 2 :]]])
    n, d = data.shape
    print(f"{n} indexed rows, {len(queries)} queries ({len(outside)} from outside), d={d}", flush=True)

    rows = []
    for metric in ("cosine", "euclidean", "manhattan"):
        brute = NearestNeighbors(n_neighbors=K, algorithm="brute", metric=metric, n_jobs=1).fit(data)
        truth = brute.kneighbors(queries, return_distance=False)
        timed = min(100, len(queries))  # brute force is slow: time the first 100 single queries
        ms, found = per_query_ms(lambda q: brute.kneighbors(q, return_distance=False), queries[:timed])
        rows.append((metric, "sklearn brute force", f"{timed} queries timed", ms, recall(found, truth[:timed]), 0.0))

        start = time.perf_counter()
        ivf = NeighborIndex(metric=metric, algorithm="ivf").fit(data)
        build = time.perf_counter() - start
        n_probes = [ivf._index.nprobe] + [p for p in (32, 64, 96, 128) if p != ivf._index.nprobe]
        for n_probe in n_probes:
            ivf._index.nprobe = n_probe
            ms, found = per_query_ms(lambda q: ivf.kneighbors(q, K)[1], queries)
            rows.append((metric, f"lab NeighborIndex ({ivf.algorithm_}, {ivf._index.nlist} lists)", f"nprobe={n_probe}", ms, recall(found, truth), build))
            print(rows[-1], flush=True)

        start = time.perf_counter()
        faiss.omp_set_num_threads(2)
        hnsw = NeighborIndex(metric=metric, algorithm="hnsw").fit(data)  # faiss IndexHNSWFlat, M=32
        faiss.omp_set_num_threads(1)
        build = time.perf_counter() - start
        if metric == "manhattan":  # the L2 graph proposes hnsw_candidates x k rows, re-ranked in L1 (efSearch at least that)
            default = hnsw.hnsw_candidates
            for candidates in (8, 16, 24, 32):
                hnsw.hnsw_candidates = candidates
                ms, found = per_query_ms(lambda q: hnsw.kneighbors(q, K)[1], queries)
                setting = f"{hnsw._n_candidates(K)} L2 candidates re-ranked in L1" + (" (default)" if candidates == default else "")
                rows.append((metric, "lab NeighborIndex (hnsw: faiss IndexHNSWFlat, M=32, L2 graph)", setting, ms, recall(found, truth), build))
                print(rows[-1], flush=True)
            hnsw.hnsw_candidates = default
        else:
            for ef in (32, 64, 128, 256):
                hnsw._index.hnsw.efSearch = ef
                ms, found = per_query_ms(lambda q: hnsw.kneighbors(q, K)[1], queries)
                setting = f"efSearch={ef}" + (" (default)" if ef == 128 else "")
                rows.append((metric, "lab NeighborIndex (hnsw: faiss IndexHNSWFlat, M=32)", setting, ms, recall(found, truth), build))
                print(rows[-1], flush=True)

        start = time.perf_counter()
        pq = NeighborIndex(metric=metric, algorithm="ivf", compress_threshold=0).fit(data)  # what a collection above 200,000 rows builds
        build = time.perf_counter() - start
        for n_probe in (32, 64, 128):
            pq._index.nprobe = n_probe
            ms, found = per_query_ms(lambda q: pq.kneighbors(q, K)[1], queries)
            setting = f"nprobe={n_probe}, {pq._n_candidates(K)} candidates re-ranked"
            rows.append((metric, f"lab NeighborIndex ({pq.algorithm_}, {pq._index.nlist} lists, {pq._index.pq.M}-byte codes)", setting, ms, recall(found, truth), build))
            print(rows[-1], flush=True)
        ivf = hnsw = pq = None  # free before the next metric's indexes

    try:
        from annoy import AnnoyIndex
    except ImportError:
        AnnoyIndex = None
    if AnnoyIndex is not None:
        for metric, annoy_metric in (("cosine", "angular"), ("euclidean", "euclidean")):
            truth = NearestNeighbors(n_neighbors=K, algorithm="brute", metric=metric, n_jobs=1).fit(data).kneighbors(queries, return_distance=False)
            start = time.perf_counter()
            annoy = AnnoyIndex(d, annoy_metric)
            for i, v in enumerate(data):
                annoy.add_item(i, v)
            annoy.build(50, n_jobs=2)
            build = time.perf_counter() - start
            for search_k in (5_000, 20_000, 50_000):
                ms, found = per_query_ms(lambda q: annoy.get_nns_by_vector(q[0], K, search_k=search_k), queries)
                rows.append((metric, "annoy (50 trees)", f"search_k={search_k}", ms, recall(found, truth), build))
                print(rows[-1], flush=True)

    lines = [
        "# Nearest neighbours on real embeddings",
        "",
        f"Written by `python scripts/bench_neighbors.py {' '.join('--collection ' + p for p in args.collection)} --queries {args.queries}`.",
        "",
        f"{n:,} indexed rows (real efficientnet-lite0 embeddings, d={d}); {len(queries)} single queries, "
        f"{len(outside)} of them held out of the index. Recall@{K} against sklearn brute force; "
        "median ms per single query on one faiss thread; build seconds on 2 threads (one busy shared machine: compare rows, not runs).",
        "",
        f"Disk: {disk:,} bytes for the {len(pooled):,} rows of the collections (float16 embeddings and class probabilities, "
        f"images.csv, manifest) = {disk / len(pooled) * 1e6 / 1e9:.2f} GB per million rows.",
        "",
        "| metric | method | setting | ms/query | recall@10 | build s |",
        "|---|---|---|---:|---:|---:|",
    ]
    lines += [f"| {m} | {name} | {setting} | {ms:.3f} | {r:.4f} | {b:.1f} |" for m, name, setting, ms, r, b in rows]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
