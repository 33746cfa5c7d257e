"""``lab evaluate`` on every shared labeled collection: Caltech-101, flower_photos_600, two look-alike subsets and CIFAR-10.

    python scripts/evaluate_collections.py --workdir DIR [--rounds 4] [--no-cifar10]

Unpacks and indexes the shared datasets into ``DIR`` (resuming), cuts the
look-alike subsets from Caltech-101 (:func:`lab.datasets.evaluation_collections`:
twelve four-legged animals; six flowers and plants), then writes
``results/evaluation_<name>.{md,json}`` and CSV tables for each. The tuning
of word learning is judged across those four, never on one; CIFAR-10
(60,000 images of 32 x 32 pixels, ten classes ImageNet mostly names) is a
collection of another kind, checked, not tuned on (indexing it the first time
takes a few minutes; ``--no-cifar10`` leaves it out).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab.datasets import evaluation_collections  # noqa: E402
from lab.evaluation import collection_labels, evaluate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="where datasets are unpacked and indexed (reused across runs)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", default=str(ROOT / "results"))
    parser.add_argument("--no-cifar10", action="store_true", help="leave CIFAR-10 out")
    args = parser.parse_args()
    command = "python scripts/evaluate_collections.py " + " ".join(sys.argv[1:])
    collections = evaluation_collections(args.workdir, cifar10=not args.no_cifar10)
    for name, (col, labels) in collections.items():
        result = evaluate(col, collection_labels(col, labels), rounds=args.rounds)
        result.facts["command"] = command
        for path in result.save(args.out, f"evaluation_{name}"):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
