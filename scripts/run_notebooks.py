"""Run every numbered notebook top to bottom on a collection and time each one.

    python scripts/run_notebooks.py [--collection PATH --images FOLDER] [--out DIR]

Default: Caltech-101 from the shared datasets, unpacked and indexed into a work
dir first (indexing is timed separately). Executed notebooks go to ``--out``
(default a temp dir); the timings to ``results/notebook_timings.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lab.installed import versions_line  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection")
    parser.add_argument("--images")
    parser.add_argument("--out")
    args = parser.parse_args()
    import papermill

    from lab import Collection

    workdir = Path(tempfile.mkdtemp(prefix="lab-notebooks-"))
    out = Path(args.out or workdir / "executed")
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# Notebook run times", "", f"Command: `python scripts/run_notebooks.py {' '.join(sys.argv[1:])}`", "", versions_line(), ""]
    collection, images = args.collection, args.images
    if not collection:
        from lab.datasets import indexed_dataset

        start = time.perf_counter()
        col, folder = indexed_dataset("caltech101", workdir)
        collection, images = str(col.root), str(folder / "images")
        lines += [f"Indexing Caltech-101 first (`lab index`): {time.perf_counter() - start:.0f} s.", ""]
    col = Collection.open(collection)
    lines += [f"Collection: {len(col):,} images, model {col.model_name}, 2 cores.", "", "| notebook | seconds |", "|---|---:|"]
    total = 0.0
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        start = time.perf_counter()
        papermill.execute_notebook(
            str(notebook), str(out / notebook.name), kernel_name="python3", cwd=str(notebook.parent),
            parameters={"collection": collection, "images": images, "figures_dir": str(out / "figures")},
        )
        seconds = time.perf_counter() - start
        total += seconds
        lines.append(f"| {notebook.name} | {seconds:.0f} |")
        print(notebook.name, f"{seconds:.0f} s", flush=True)
    lines += [f"| all six | {total:.0f} |", "", f"Executed notebooks in {out} (not kept in the repository)."]
    text = "\n".join(lines) + "\n"
    (ROOT / "results" / "notebook_timings.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
