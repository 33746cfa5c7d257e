"""Peak memory of decoding many huge images at once, with and without the shared decode budget.

    python scripts/bench_decode_memory.py                # 8 x 88 MP PNGs, 8 threads -> results/bench_decode_memory.md
    python scripts/bench_decode_memory.py --megapixels 24 --copies 6 --workers 6 --budget-mb 150 --json

Writes one PNG of the given size (a real photo scaled up) and copies it, then,
in a fresh process for each configuration, decodes every copy at once with a
thread pool through :func:`lab.extraction.decode_for_model` (the indexer's own
read-hash-decode-preprocess step, the 224-pixel input of efficientnet-lite0)
and measures how much the process's peak resident memory grew. The baseline
switches the budget off (``DECODE_MEMORY_BYTES`` set to 2**62): each thread then
holds its whole image. Both run side by side in one invocation, and the ratio is
printed; with default arguments the table goes to
``results/bench_decode_memory.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

UNLIMITED = 1 << 62


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def child(files: list[str], workers: int, budget_bytes: int) -> dict:
    """Decode ``files`` with ``workers`` threads under a budget; peak RSS growth in MB (run in a fresh process)."""
    from concurrent.futures import ThreadPoolExecutor
    from functools import partial
    from types import SimpleNamespace

    import lab.image_decoding as decoding
    from lab.extraction import decode_for_model
    from lab.models.base import center_crop

    decoding.DECODE_MEMORY_BYTES = budget_bytes
    # the two things decode_for_model needs from a backbone; the real preprocessing, no network
    backbone = SimpleNamespace(image_size=224, preprocess=partial(center_crop, size=224))
    decode_for_model(files[0], backbone)  # warm the decoder's own allocations
    before = _status_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current size
    with ThreadPoolExecutor(max_workers=workers) as pool:
        records = list(pool.map(lambda path: decode_for_model(path, backbone), files))
    return {
        "peak_growth_mb": round(_status_mb("VmHWM") - before, 1),
        "decoded": sum(r.error is None for r in records),
        "errors": sorted({r.error for r in records if r.error}),
    }


def make_images(folder: Path, megapixels: float, copies: int) -> list[Path]:
    """``copies`` copies of one PNG of about ``megapixels`` MP (a photo scaled up, 4:3)."""
    from PIL import Image
    from skimage import data

    height = int((megapixels * 1e6 * 3 / 4) ** 0.5)
    width = int(megapixels * 1e6 / height)
    first = folder / "big_0.png"
    Image.fromarray(data.chelsea()).resize((width, height), Image.BILINEAR).save(first, compress_level=1)
    paths = [first]
    for i in range(1, copies):
        paths.append(folder / f"big_{i}.png")
        shutil.copy(first, paths[-1])
    return paths


def measure(files: list[Path], workers: int, budget_bytes: int) -> dict:
    """Run :func:`child` in a fresh interpreter and return its result."""
    command = [sys.executable, __file__, "--child", "--workers", str(workers), "--budget-bytes", str(budget_bytes)]
    output = subprocess.run(command + [str(p) for p in files], check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, default=88)
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--budget-mb", type=float, default=None, help="decode budget (default lab's own, 1 GiB)")
    parser.add_argument("--json", action="store_true", help="print one JSON object, write no results file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--budget-bytes", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.files, args.workers, args.budget_bytes)))
        return

    from lab.image_decoding import DECODE_MEMORY_BYTES

    budget = int(args.budget_mb * 2**20) if args.budget_mb else DECODE_MEMORY_BYTES
    with tempfile.TemporaryDirectory(prefix="lab-decode-memory-") as tmp:
        files = make_images(Path(tmp), args.megapixels, args.copies)
        file_mb = files[0].stat().st_size / 2**20
        bounded = measure(files, args.workers, budget)
        unbounded = measure(files, args.workers, UNLIMITED)
    result = {
        "megapixels": args.megapixels,
        "copies": args.copies,
        "workers": args.workers,
        "file_mb": round(file_mb, 1),
        "budget_mb": round(budget / 2**20, 1),
        "bounded": bounded,
        "unbounded": unbounded,
        "ratio": round(unbounded["peak_growth_mb"] / max(bounded["peak_growth_mb"], 1.0), 2),
    }
    if args.json:
        print(json.dumps(result))
        return
    command = "python scripts/bench_decode_memory.py" + ("" if sys.argv[1:] == [] else " " + " ".join(sys.argv[1:]))
    text = f"""# Decoding memory: {args.copies} x {args.megapixels:g} MP PNGs, {args.workers} threads

Command: `{command}`

Machine: {os.cpu_count()} cores. Each PNG is {file_mb:.0f} MB on disk; `decode_for_model` reads, hashes,
decodes and prepares each for a 224-pixel network input. Peak resident memory growth of a fresh
process while all {args.copies} are decoded at once:

| decode budget | peak growth (MB) | images decoded |
|---|---:|---:|
| {budget / 2**20:.0f} MB (`DECODE_MEMORY_BYTES`) | {bounded['peak_growth_mb']:.0f} | {bounded['decoded']} |
| none (every thread holds its image) | {unbounded['peak_growth_mb']:.0f} | {unbounded['decoded']} |

Without the budget the peak is {result['ratio']:.1f} times higher.
"""
    out = ROOT / "results" / "bench_decode_memory.md"
    if sys.argv[1:] == []:
        out.write_text(text)
        print(f"wrote {out}")
    print(text)


if __name__ == "__main__":
    main()
