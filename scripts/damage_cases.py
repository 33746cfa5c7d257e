"""Damage copies of a real collection in each way issue 9 lists; record what lab does, before and after.

    flock /tmp/lab-heavy.lock python scripts/damage_cases.py --images /work/cache/data/flower_photos/images \\
        --n 200 --baseline-ref 199fb74 --out results/damage_cases.md

Builds one collection of the first ``--n`` images of ``--images`` (with the
current code), then runs every case twice on fresh copies: with the ``lab``
package of ``--baseline-ref`` (extracted with ``git archive``) and with the
current one, each in its own process. Each cell lists what happened, step by
step: opening, query by example (``misaligned`` counts rows whose features are
not those of their own image), keyword search, re-indexing the same folder, and
with the current code ``check`` and ``repair``.
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
CASES = {
    "csv_line": "a deleted line in images.csv",
    "truncated_npy": "embeddings.npy truncated to half",
    "chunk_name": "chunk name `../../..` in the manifest",
    "row_count": "manifest row count +3",
    "embedding_size": "embeddings.npy with 1000 columns instead of 1280",
    "nan_rows": "10 rows of embeddings set to NaN",
    "feedback_damaged": "feedback.sqlite header overwritten (10 judgments)",
    "feedback_zero": "feedback.sqlite cut to 0 bytes (10 judgments)",
    "reader_compact": "reader opened before another process adds 5 images and compacts",
}


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:110]}{'...' if len(text) > 110 else ''}"


def _damage(case: str, root: Path, col) -> None:
    import numpy as np

    manifest = json.loads((root / "manifest.json").read_text())
    chunk = root / "chunks" / manifest["chunks"][0]["name"]
    if case == "csv_line":
        lines = (chunk / "images.csv").read_text().splitlines(keepends=True)
        (chunk / "images.csv").write_text("".join(lines[:2] + lines[3:]))
    elif case == "truncated_npy":
        data = (chunk / "embeddings.npy").read_bytes()
        (chunk / "embeddings.npy").write_bytes(data[: len(data) // 2])
    elif case in ("chunk_name", "row_count"):
        if case == "chunk_name":
            manifest["chunks"][0]["name"] = "../../.."
        else:
            manifest["chunks"][0]["rows"] += 3
        (root / "manifest.json").write_text(json.dumps(manifest))
    elif case == "embedding_size":
        np.save(chunk / "embeddings.npy", np.zeros((manifest["chunks"][0]["rows"], 1000), np.float16))
    elif case == "nan_rows":
        stored = np.load(chunk / "embeddings.npy", mmap_mode="r+")
        stored[10:20] = np.nan
        stored.flush()
    elif case.startswith("feedback"):
        for row in range(10):
            col.judge("daisy", row, relevant=row % 2 == 0)
        store = root / "feedback.sqlite"
        if case == "feedback_zero":
            store.write_bytes(b"")
        else:
            store.write_bytes(b"\xff" * 100 + store.read_bytes()[100:])


def _steps(case: str, root: Path, images: Path, original: dict, work: Path) -> list[str]:
    """Run one case on a fresh copy at ``root``; returns what each step did."""
    import numpy as np

    from lab import Collection

    steps = []

    def step(name, action):
        try:
            steps.append(f"{name}: {action()}")
            return True
        except Exception as err:  # noqa: BLE001 - recording every outcome is the point
            steps.append(f"{name}: {_short(err)}")
            return False

    def misaligned(col):
        wrong = sum(
            not np.allclose(np.asarray(col.embeddings[i], np.float32), original[p], atol=1e-2, equal_nan=False)
            for i, p in enumerate(col.paths)
            if p in original
        )
        return f"{len(col)} images, misaligned {wrong}"

    def similar(col):
        if len(col) < 2:
            return f"{len(col)} images: nothing to compare"
        frame = col.similar(0, k=len(col) - 1)
        return f"{len(frame)} results, {int(np.isnan(frame['score']).sum())} NaN scores"

    if case == "reader_compact":
        reader = Collection.open(root)  # opened, not queried yet
        new = work / "new"
        new.mkdir()
        for path in sorted(images.iterdir())[len(original) : len(original) + 5]:
            shutil.copy(path, new / path.name)
        writer = Collection.open(root)
        writer.add(new, progress=False)
        writer.compact()
        step("similar after compact", lambda: similar(reader))
        step("search after compact", lambda: f"{len(reader.search('daisy', k=10))} results")
        step("new images seen", lambda: f"{len(set(reader.paths) & {str(p) for p in new.iterdir()})} of 5")
        return steps

    _damage(case, root, Collection.open(root) if case.startswith("feedback") else None)
    col = None

    def open_it():
        nonlocal col
        col = Collection.open(root)
        return "opened"

    if step("open", open_it):
        step("rows", lambda: misaligned(col))
        step("similar", lambda: similar(col))
        step("search", lambda: f"{len(col.search('daisy', k=10))} results")
        if case.startswith("feedback"):
            step("judgments", lambda: f"{len(col.judgments())} of 10")
    step("index again", lambda: str(Collection.open(root, create=True).add(images_list(images, len(original)), progress=False)).splitlines()[0])
    if hasattr(Collection, "check"):
        step("check", lambda: "ok" if Collection.open(root, verify=False).check().ok else "; ".join(
            f"{r.where[:8]}: {r.problem}" for r in Collection.open(root, verify=False).check().problems.itertuples() if r.damaged)[:160])
        step("repair", lambda: " | ".join(str(Collection.open(root, verify=False).repair(progress=False)).splitlines())[:220])
        step("after repair", lambda: misaligned(Collection.open(root)) + ("; " + similar(Collection.open(root))))
    return steps


def images_list(images: Path, n: int) -> list[Path]:
    return sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]


def run_cases(source: Path, images: Path, n: int) -> dict:
    import numpy as np

    from lab import Collection

    original_col = Collection.open(source)
    original = {p: np.asarray(original_col.embeddings[i], np.float32) for i, p in enumerate(original_col.paths)}
    outcomes = {}
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "a" / "b" / "col.lab"
            shutil.copytree(source, root)
            outcomes[case] = _steps(case, root, images, original, Path(tmp))
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--baseline-ref", default=None, help="git ref whose lab package is the 'before' column")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--run-cases", type=Path, default=None, help=argparse.SUPPRESS)  # worker: source collection
    args = parser.parse_args()
    if args.run_cases:
        json.dump(run_cases(args.run_cases, args.images, args.n), sys.stdout)
        return 0

    from lab import Collection
    from lab.benchmarking import baseline_package, publish

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source.lab"
        Collection.open(source, create=True).add(images_list(args.images, args.n), progress=True)
        columns = {}
        versions = [("before", args.baseline_ref), ("after", None)] if args.baseline_ref else [("after", None)]
        for label, ref in versions:
            path = baseline_package(ref, Path(tmp) / "baseline") if ref else str(ROOT)
            env = dict(os.environ, PYTHONPATH=path)
            command = [sys.executable, __file__, "--images", str(args.images), "--n", str(args.n), "--run-cases", str(source)]
            done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
            columns[label] = json.loads(done.stdout.strip().splitlines()[-1])
    command = " ".join(["python scripts/damage_cases.py"] + sys.argv[1:])
    lines = [f"<!-- written by: {command} -->", f"# Damaged collections: what lab does ({args.n} images of {args.images.name})", ""]
    lines += ["| case | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for case, title in CASES.items():
        lines.append(f"| {title} | " + " | ".join("<br>".join(columns[label][case]).replace("|", "/") for label in columns) + " |")
    publish("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
