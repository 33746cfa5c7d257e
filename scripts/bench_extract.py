"""Benchmark feature extraction: network alone vs end-to-end indexing vs a per-image loop.

    python scripts/bench_extract.py [--dataset caltech101] [--limit N] [--per-image N]
    python scripts/bench_extract.py --dataset cifar10 --memory   # 60,000 images, peak RSS

All three are measured in the same run on the same machine, and the ratios
are printed and written to ``results/bench_extract_<dataset>.md``:

* network alone: the backbone on pre-decoded, pre-resized arrays (batch 32);
* end to end: ``Collection.add`` on the image files (hash, decode, resize,
  network, atomic chunk writes), model already loaded;
* per-image loop: what the original scripts did, one file and one network
  call at a time.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab import Collection, load_model  # noqa: E402
from lab.benchmarking import rss_mb  # noqa: E402
from lab.datasets import read_labels, unpack_dataset  # noqa: E402
from lab.image_decoding import decode_image  # noqa: E402
from lab.installed import versions_line  # noqa: E402


def bench_network(backbone, files, batch_size=32) -> float:
    arrays = np.stack([backbone.preprocess(decode_image(p, backbone.image_size)) for p in files])
    backbone.predict(arrays[:batch_size])  # warm-up: graph tracing
    start = time.perf_counter()
    for i in range(0, len(arrays), batch_size):
        backbone.predict(arrays[i : i + batch_size])
    return len(arrays) / (time.perf_counter() - start)


def bench_per_image(backbone, files) -> float:
    """The original scripts: keras load_img at the input size, then model.predict, one image per call."""
    import keras

    def one(path):
        pixels = keras.utils.img_to_array(keras.utils.load_img(path, target_size=(backbone.image_size,) * 2))
        backbone.network.predict(pixels[None], verbose=0)

    one(files[0])
    start = time.perf_counter()
    for path in files:
        one(path)
    return len(files) / (time.perf_counter() - start)


def bench_batch_of_one(backbone, files) -> float:
    """lab's own compiled predict, but one image per call: what batching alone buys."""
    backbone.predict(backbone.preprocess(decode_image(files[0]))[None])
    start = time.perf_counter()
    for path in files:
        backbone.predict(backbone.preprocess(decode_image(path, backbone.image_size))[None])
    return len(files) / (time.perf_counter() - start)


def bench_end_to_end(files, workdir: Path, sample_memory: bool) -> tuple[float, float, list]:
    import shutil

    shutil.rmtree(workdir / "bench.lab", ignore_errors=True)  # always from scratch: a reused one would resume
    col = Collection.open(workdir / "bench.lab", create=True)
    col.backbone  # load before timing
    samples, stop = [], threading.Event()

    def sampler():
        while not stop.is_set():
            samples.append((time.perf_counter(), rss_mb()))
            time.sleep(1.0)

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    start = time.perf_counter()
    report = col.add(files, progress=True)
    elapsed = time.perf_counter() - start
    stop.set()
    thread.join()
    assert report.added + len(report.failed) == len(files), report
    return report.added / elapsed, elapsed, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="caltech101", choices=["caltech101", "cifar10"])
    parser.add_argument("--limit", type=int, default=None, help="images for end-to-end (default all)")
    parser.add_argument("--network-images", type=int, default=512, help="images for the network-alone run")
    parser.add_argument("--per-image", type=int, default=200, help="images for the per-image loop")
    parser.add_argument("--memory", action="store_true", help="only end-to-end, reporting resident memory over time")
    parser.add_argument("--workdir", default=None, help="where to unpack and index (default a temp dir)")
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="lab-bench-"))
    folder = unpack_dataset(args.dataset, workdir / "data")
    files = read_labels(folder)["path"].tolist()
    rng = np.random.default_rng(0)
    files = [files[i] for i in rng.permutation(len(files))]
    if args.limit:
        files = files[: args.limit]
    backbone = load_model()
    lines = [f"# Extraction benchmark: {args.dataset}", "", f"Command: `python scripts/bench_extract.py {' '.join(sys.argv[1:])}`", "", versions_line(), ""]
    lines += [f"Machine: {os.cpu_count()} cores; model {backbone.name}; {len(files)} images end to end.", ""]

    if not args.memory:
        network = bench_network(backbone, files[: args.network_images])
        per_image = bench_per_image(backbone, files[: args.per_image])
        batch_of_one = bench_batch_of_one(backbone, files[: args.per_image])
    e2e, elapsed, samples = bench_end_to_end(files, workdir, args.memory)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    if not args.memory:
        lines += [
            "| measurement | images/s | ratio |",
            "|---|---:|---:|",
            f"| network alone (pre-decoded arrays, batch 32, {args.network_images} images) | {network:.1f} | 1.00 |",
            f"| end to end `Collection.add` ({len(files)} files) | {e2e:.1f} | {e2e / network:.2f} x network |",
            f"| per-image loop like the original scripts: `keras.utils.load_img` + `model.predict`, one image per call ({args.per_image} files) | {per_image:.1f} | {per_image / network:.2f} x network |",
            f"| lab's compiled predict with batches of one ({args.per_image} files) | {batch_of_one:.1f} | {batch_of_one / network:.2f} x network |",
            "",
            f"End to end vs per-image loop: **{e2e / per_image:.1f} x** (target >= 5 x).  ",
            f"End to end vs network alone: **{e2e / network:.2f} x** (target >= 0.8 x).",
        ]
    lines += ["", f"End to end took {elapsed:.0f} s; peak resident memory of the process {peak:.0f} MB."]
    if samples:
        marks = samples[:: max(1, len(samples) // 8)]
        lines += ["", "Resident memory while indexing (s since start: MB): " + ", ".join(f"{t - samples[0][0]:.0f}: {m:.0f}" for t, m in marks)]
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "results" / f"bench_extract_{args.dataset}{'_memory' if args.memory else ''}.md"
    out.write_text(text)
    print("wrote", out.relative_to(ROOT))


if __name__ == "__main__":
    main()
