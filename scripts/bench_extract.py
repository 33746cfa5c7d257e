"""Benchmark feature extraction: Keras vs LiteRT, network alone and end to end, and a per-image loop.

    python scripts/bench_extract.py [--dataset caltech101] [--limit N] [--per-image N]
    python scripts/bench_extract.py --dataset cifar10 --memory   # 60,000 images, peak RSS

Everything is measured in the same run on the same machine, and the ratios
are printed and written to ``results/bench_extract_<dataset>.md``:

* network alone, per runtime (``keras``: the reference Keras model;
  ``litert``: the converted ``.tflite`` on the LiteRT interpreter, in each
  interpreter layout: one batched call on all threads, one single-threaded
  interpreter per thread with a slice of the batch each, or batch 1 per thread),
  on pre-decoded arrays, batch 32, best of 3 interleaved rounds;
* end to end, per runtime: ``Collection.add`` on the image files (hash,
  decode, resize, network, atomic chunk writes), each in its own process so
  that its peak resident memory is its own, model already loaded and converted;
* per-image loop: what the original scripts did, one file and one Keras
  network call at a time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab import Collection, load_model  # noqa: E402
from lab.models import RUNTIMES  # noqa: E402
from lab.models.litert import default_threads  # noqa: E402
from lab.benchmarking import rss_mb  # noqa: E402
from lab.datasets import read_labels_csv, unpack_dataset  # noqa: E402
from lab.image_decoding import decode_image  # noqa: E402
from lab.installed import versions_line  # noqa: E402


def bench_networks(candidates: dict, files, batch_size=32, rounds=3) -> dict:
    """Images per second of each backbone on the same pre-decoded arrays, best of ``rounds`` interleaved rounds."""
    first = next(iter(candidates.values()))
    arrays = np.stack([first.preprocess(decode_image(p, first.image_size)) for p in files])
    for backbone in candidates.values():
        backbone.predict(arrays[:batch_size])  # warm-up: graph tracing, tensor allocation
    rates = {name: 0.0 for name in candidates}
    for _ in range(rounds):
        for name, backbone in candidates.items():
            start = time.perf_counter()
            for i in range(0, len(arrays), batch_size):
                backbone.predict(arrays[i : i + batch_size])
            rates[name] = max(rates[name], len(arrays) / (time.perf_counter() - start))
    return rates


def bench_decode(backbone, files) -> float:
    """Images per second of one thread reading, hashing, decoding and resizing (the work beside the network)."""
    from lab.extraction import decode_for_model

    start = time.perf_counter()
    for path in files:
        decode_for_model(path, backbone)
    return len(files) / (time.perf_counter() - start)


def bench_per_image(backbone, files) -> float:
    """The original scripts: keras load_img at the input size, then model.predict, one image per call."""
    import keras

    network = backbone.network  # the Keras reference

    def one(path):
        pixels = keras.utils.img_to_array(keras.utils.load_img(path, target_size=(backbone.image_size,) * 2))
        network.predict(pixels[None], verbose=0)

    one(files[0])
    start = time.perf_counter()
    for path in files:
        one(path)
    return len(files) / (time.perf_counter() - start)


def bench_end_to_end(files, workdir: Path, runtime: str) -> dict:
    """``Collection.add`` of ``files`` into a new collection (run in a child process: see ``--child``)."""
    col = Collection.open(workdir / f"bench-{runtime}.lab")  # made empty by the parent
    col.load_backbone(runtime)  # load (and convert) before timing
    samples, stop = [], threading.Event()

    def sampler():
        while not stop.is_set():
            samples.append((time.perf_counter(), rss_mb()))
            time.sleep(1.0)

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    start = time.perf_counter()
    report = col.add(files, progress=True, runtime=runtime)
    elapsed = time.perf_counter() - start
    stop.set()
    thread.join()
    assert report.added + len(report.failed) == len(files), report
    return {"rate": report.added / elapsed, "elapsed": elapsed, "peak": peak_rss_mb(), "samples": [(t - samples[0][0], m) for t, m in samples]}


def peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM: unlike ru_maxrss, not carried over from the parent across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def end_to_end_in_child(files_list: Path, workdir: Path, runtime: str) -> dict:
    """Run :func:`bench_end_to_end` in a fresh process, so peak memory is that run's alone."""
    import shutil

    shutil.rmtree(workdir / f"bench-{runtime}.lab", ignore_errors=True)  # always from scratch: a reused one would resume
    Collection.open(workdir / f"bench-{runtime}.lab", create=True)
    out = workdir / f"end-to-end-{runtime}.json"
    command = [sys.executable, __file__, "--child", runtime, "--files-list", str(files_list), "--workdir", str(workdir)]
    subprocess.run(command, check=True, stdout=sys.stderr)
    return json.loads(out.read_text())


def load_average() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="caltech101", choices=["caltech101", "cifar10"])
    parser.add_argument("--limit", type=int, default=None, help="images for end-to-end (default all)")
    parser.add_argument("--network-images", type=int, default=512, help="images for the network-alone run")
    parser.add_argument("--per-image", type=int, default=200, help="images for the per-image loop")
    parser.add_argument("--memory", action="store_true", help="only end-to-end, reporting resident memory over time")
    parser.add_argument("--workdir", default=None, help="where to unpack and index (default a temp dir)")
    parser.add_argument("--child", choices=list(RUNTIMES), help=argparse.SUPPRESS)
    parser.add_argument("--files-list", help=argparse.SUPPRESS)
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="lab-bench-"))
    if args.child:  # one end-to-end run, in its own process
        files = Path(args.files_list).read_text().splitlines()
        result = bench_end_to_end(files, workdir, args.child)
        (workdir / f"end-to-end-{args.child}.json").write_text(json.dumps(result))
        return

    folder = unpack_dataset(args.dataset, workdir / "data")
    files = read_labels_csv(folder / "labels.csv")["path"].tolist()
    rng = np.random.default_rng(0)
    files = [files[i] for i in rng.permutation(len(files))]
    if args.limit:
        files = files[: args.limit]
    files_list = workdir / "files.txt"
    files_list.write_text("\n".join(map(str, files)))
    keras_backbone = load_model(runtime="keras")
    litert_backbone = load_model(runtime="litert")  # converts once, before any timing
    name = litert_backbone.name
    lines = [f"# Extraction benchmark: {args.dataset}", "", f"Command: `python scripts/bench_extract.py {' '.join(sys.argv[1:])}`", "", versions_line(), ""]
    lines += [f"Machine: {os.cpu_count()} cores, shared (load average at start: {load_average()}); model {name}; {len(files)} images end to end.", ""]

    if not args.memory:
        threads = default_threads()
        layouts = {
            "keras": keras_backbone,
            f"litert: one batched call on {threads} threads": dataclasses.replace(litert_backbone, per_thread=False, call_batch=None),
            f"litert: {threads} single-thread interpreters, a slice of the batch each": dataclasses.replace(litert_backbone, call_batch=None),
            f"litert: {threads} single-thread interpreters, batch 1 per thread (default)": litert_backbone,
        }
        networks = bench_networks(layouts, files[: args.network_images])
        network_keras = networks["keras"]
        network_litert = networks[f"litert: {threads} single-thread interpreters, batch 1 per thread (default)"]
        per_image = bench_per_image(keras_backbone, files[: args.per_image])
        decode = bench_decode(litert_backbone, files[: args.network_images])
        # with the network and decoding sharing all cores, end to end cannot exceed 1 / (1/network + 1/(decode x cores))
        bound = 1 / (1 / network_litert + 1 / (decode * threads))
    del keras_backbone, litert_backbone
    runs = {runtime: end_to_end_in_child(files_list, workdir, runtime) for runtime in ("keras", "litert")}
    keras_run, litert_run = runs["keras"], runs["litert"]

    if not args.memory:
        lines += [
            f"## Network alone (pre-decoded arrays, batch 32, {args.network_images} images, best of 3 interleaved rounds)",
            "",
            "| runtime and layout | images/s | ratio to Keras |",
            "|---|---:|---:|",
        ]
        lines += [f"| {label} | {rate:.1f} | {rate / network_keras:.2f} |" for label, rate in networks.items()]
        lines += [
            "",
            f"## End to end: `Collection.add` of {len(files)} files, each runtime in its own process",
            "",
            "| measurement | images/s | ratio | peak resident memory |",
            "|---|---:|---:|---:|",
            f"| Keras end to end (what indexing did before LiteRT) | {keras_run['rate']:.1f} | {keras_run['rate'] / network_keras:.2f} x Keras network | {keras_run['peak']:.0f} MB |",
            f"| LiteRT end to end (default) | {litert_run['rate']:.1f} | {litert_run['rate'] / network_litert:.2f} x LiteRT network | {litert_run['peak']:.0f} MB |",
            f"| per-image loop like the original scripts: `keras.utils.load_img` + `model.predict`, one image per call ({args.per_image} files) | {per_image:.1f} | {per_image / network_keras:.2f} x Keras network | |",
            "",
            f"LiteRT network alone vs Keras: **{network_litert / network_keras:.2f} x** (target >= 1.8 x).  ",
            f"LiteRT end to end vs Keras end to end: **{litert_run['rate'] / keras_run['rate']:.2f} x** (target >= 1.5 x).  ",
            f"LiteRT end to end vs LiteRT network alone: **{litert_run['rate'] / network_litert:.2f} x** (target >= 0.8 x).  ",
            f"Reading, hashing, decoding and resizing alone: {decode:.0f} images/s on one thread; sharing the {threads} cores with the network, "
            f"end to end can reach at most {bound:.0f} images/s = {bound / network_litert:.2f} x the LiteRT network alone.  ",
            f"Peak memory, LiteRT vs Keras end to end: **{litert_run['peak']:.0f} MB vs {keras_run['peak']:.0f} MB** (target: no higher).  ",
            f"End to end (LiteRT) vs per-image loop: **{litert_run['rate'] / per_image:.1f} x** (target >= 5 x).",
        ]
    for runtime, run in runs.items():
        lines += ["", f"{runtime}: end to end took {run['elapsed']:.0f} s ({run['rate']:.1f} images/s); peak resident memory of its process {run['peak']:.0f} MB."]
        marks = run["samples"][:: max(1, len(run["samples"]) // 8)]
        if marks:
            lines += ["", f"Resident memory while indexing with {runtime} (s since start: MB): " + ", ".join(f"{t:.0f}: {m:.0f}" for t, m in marks)]
    lines += ["", f"Load average at the end: {load_average()}."]
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "results" / f"bench_extract_{args.dataset}{'_memory' if args.memory else ''}.md"
    out.write_text(text)
    print("wrote", out.relative_to(ROOT))


if __name__ == "__main__":
    main()
