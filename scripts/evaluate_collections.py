"""``lab evaluate`` on every shared labeled collection: Caltech-101, flower_photos_600 and two look-alike subsets.

    python scripts/evaluate_collections.py --workdir DIR [--rounds 4]

Unpacks and indexes the shared datasets into ``DIR`` (resuming), cuts the
look-alike subsets from Caltech-101 (``scripts/make_lookalike_subsets.py``:
twelve four-legged animals; six flowers and plants), then writes
``results/evaluation_<name>.{md,json}`` and CSV tables for each. The tuning
of word learning is judged across all four, never on one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab import Collection  # noqa: E402
from lab.datasets import indexed_dataset  # noqa: E402
from lab.evaluation import evaluate, read_labels  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="where datasets are unpacked and indexed (reused across runs)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", default=str(ROOT / "results"))
    args = parser.parse_args()
    workdir = Path(args.workdir)
    command = "python scripts/evaluate_collections.py " + " ".join(sys.argv[1:])
    runs = []
    for name in ("flower_photos_600", "caltech101"):
        col, folder = indexed_dataset(name, workdir)
        runs.append((name, col, folder / "labels.csv"))
    caltech, caltech_folder = runs[1][1], runs[1][2]
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_lookalike_subsets.py"), "--collection", str(caltech.root), "--labels", str(caltech_folder), "--out", str(workdir)],
        check=True,
    )
    for name in ("caltech_animals", "caltech_plants"):
        runs.append((name, Collection.open(workdir / f"{name}.lab"), workdir / f"{name}_labels.csv"))
    for name, col, labels in runs:
        result = evaluate(col, read_labels(col, labels), rounds=args.rounds)
        result.facts["command"] = command
        for path in result.save(args.out, f"evaluation_{name}"):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
