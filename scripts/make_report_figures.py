"""Make the lab report's figures (notebook 06, executed with papermill) into results/figures/.

    python scripts/make_report_figures.py --collection PATH --images FOLDER [--out results/figures]

Default: the Caltech-101 collection that scripts/evaluate_caltech.py builds,
unpacked and indexed here if needed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection")
    parser.add_argument("--images")
    parser.add_argument("--out", default=str(ROOT / "results" / "figures"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import papermill

    collection, images = args.collection, args.images
    if not collection:
        from lab.datasets import indexed_dataset

        col, folder = indexed_dataset("caltech101", tempfile.mkdtemp(prefix="lab-figures-"))
        collection, images = str(col.root), str(folder / "images")
    out_notebook = Path(args.out) / "06_report_figures.executed.ipynb"
    out_notebook.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "06_report_figures.ipynb"), str(out_notebook),
        parameters={"collection": str(collection), "images": str(images), "figures_dir": str(Path(args.out).resolve()), "rounds": args.rounds},
        cwd=str(ROOT / "notebooks"), kernel_name="python3",
    )
    out_notebook.unlink()  # the figures are the product; the executed copy holds machine paths
    print("figures in", args.out)


if __name__ == "__main__":
    main()
