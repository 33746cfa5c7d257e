"""Look-alike collections cut from Caltech-101 (features copied, nothing re-extracted), for tuning across collections.

    python scripts/make_lookalike_subsets.py --collection CALTECH.lab --labels caltech101/labels.csv --out DIR

Writes ``DIR/caltech_animals.lab`` (twelve four-legged animals) and
``DIR/caltech_plants.lab`` (six flowers and plants), each with a
``labels.csv`` beside it for ``lab evaluate --labels``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab import Collection  # noqa: E402
from lab.evaluation import read_labels  # noqa: E402

SUBSETS = {
    "caltech_animals": ["beaver", "cougar_body", "dalmatian", "elephant", "hedgehog", "kangaroo", "Leopards", "llama", "okapi", "platypus", "rhino", "wild_cat"],
    "caltech_plants": ["bonsai", "joshua_tree", "lotus", "strawberry", "sunflower", "water_lilly"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", required=True)
    parser.add_argument("--labels", required=True, help="Caltech-101's labels.csv")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    source = Collection.open(args.collection)
    labels = read_labels(source, args.labels).reindex(source.paths)
    for name, classes in SUBSETS.items():
        root = Path(args.out) / f"{name}.lab"
        shutil.rmtree(root, ignore_errors=True)
        subset = Collection.open(root, create=True, model=source.model_name)
        keep = np.flatnonzero(labels.isin(classes).to_numpy())
        images = source.images.iloc[keep].drop(columns="id").reset_index(drop=True)
        subset.add_features(images, np.asarray(source.embeddings[keep], np.float32), np.asarray(source.class_probabilities[keep], np.float32))
        pd.DataFrame({"path": images["path"], "label_name": labels.iloc[keep].to_numpy()}).to_csv(root.parent / f"{name}_labels.csv", index=False)
        print(f"{root}: {len(subset)} images of {len(classes)} classes")


if __name__ == "__main__":
    main()
