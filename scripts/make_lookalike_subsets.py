"""Look-alike collections cut from Caltech-101 (features copied, nothing re-extracted), for tuning across collections.

    python scripts/make_lookalike_subsets.py --collection CALTECH.lab --labels caltech101/labels.csv --out DIR

Writes ``DIR/caltech_animals.lab`` (twelve four-legged animals) and
``DIR/caltech_plants.lab`` (six flowers and plants), each with a
``labels.csv`` beside it for ``lab evaluate --labels``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab import Collection  # noqa: E402
from lab.datasets import LOOKALIKE_SUBSETS, cut_lookalike_subsets  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", required=True)
    parser.add_argument("--labels", required=True, help="Caltech-101's labels.csv")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    for name, labels_csv in cut_lookalike_subsets(Collection.open(args.collection), args.labels, args.out).items():
        subset = Collection.open(Path(args.out) / f"{name}.lab")
        print(f"{subset.root}: {len(subset)} images of {len(LOOKALIKE_SUBSETS[name])} classes ({labels_csv})")


if __name__ == "__main__":
    main()
