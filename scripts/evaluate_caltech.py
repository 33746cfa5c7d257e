"""Evaluate search on Caltech-101: ``lab evaluate`` on the shared dataset, tables into results/.

    python scripts/evaluate_caltech.py [--collection PATH] [--workdir DIR] [--rounds 4]

Unpacks ``../shared/datasets/caltech101.tar.gz`` and indexes it (resuming),
then runs :func:`lab.evaluation.evaluate` with the dataset's labels; Caltech's
folder names are the query words (``lab.experiments.caltech_query_words``
maps the few odd ones, e.g. ``car_side`` -> "car"). Writes
``results/evaluation_caltech101.{md,json}`` and its CSV tables.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab import Collection  # noqa: E402
from lab.datasets import unpack_dataset  # noqa: E402
from lab.evaluation import collection_labels, evaluate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", help="an existing Caltech-101 collection to reuse (its feedback is never touched)")
    parser.add_argument("--workdir", help="where to unpack and index (default a temp dir)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", default=str(ROOT / "results"))
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="lab-eval-"))
    folder = unpack_dataset("caltech101", workdir / "data")
    col = Collection.open(args.collection or workdir / "caltech101.lab", create=True)
    col.add(folder / "images")
    result = evaluate(col, collection_labels(col, folder / "labels.csv"), rounds=args.rounds)
    result.facts["command"] = "python scripts/evaluate_caltech.py " + " ".join(sys.argv[1:])
    for path in result.save(args.out, "evaluation_caltech101"):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
