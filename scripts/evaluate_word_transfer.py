"""Words that travel, measured on Caltech-101: learn words in one half, search with them in the other.

    python scripts/evaluate_word_transfer.py [--collection PATH --images FOLDER] [--workdir DIR] [--rounds 2]

The collection's images are split in two halves (seeded, every class in
both) that become two collections, A and B, sharing no image. In A a
simulated user teaches each word ImageNet does not cover with one example of
its class and judges ``--rounds`` pages of results (``simulate_feedback``).
The words are exported from A and imported into B, where nobody judged
anything: P@20 in B before (the vocabulary alone) and after the import,
and again after a second import of the same file (which must add nothing).
The source collection is only read. Writes ``results/word_transfer.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab import Collection  # noqa: E402
from lab.datasets import folder_labels, indexed_dataset  # noqa: E402
from lab.evaluate import precision_at_k  # noqa: E402
from lab.experiments import caltech_query_words, simulate_feedback  # noqa: E402
from lab.installed import versions_line  # noqa: E402


def half(source: Collection, rows: np.ndarray, path: Path) -> Collection:
    """A new collection holding ``rows`` of ``source`` (features copied, nothing re-extracted)."""
    col = Collection.open(path, create=True, model=source.model_name)
    images = source.images.iloc[rows].drop(columns="id").reset_index(drop=True)
    col.add_features(images, np.asarray(source.embeddings[rows]), np.asarray(source.class_probabilities[rows]))
    return col


def p_at_20(col: Collection, labels: pd.Series, words: dict[str, list[str]]) -> pd.Series:
    by_path = labels.reindex(col.paths)
    values = {}
    for word, classes in words.items():
        relevant = by_path.isin(classes).to_numpy()
        values[word] = precision_at_k(relevant[col.search(word, k=20)["id"].to_numpy()], 20)
    return pd.Series(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", help="an indexed Caltech-101 collection (only read)")
    parser.add_argument("--images", help="its image folder (labels.csv beside it)")
    parser.add_argument("--workdir", help="where the two halves go (default a temp dir)")
    parser.add_argument("--rounds", type=int, default=2, help="pages the simulated user judges in A after teaching")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="lab-words-"))
    if args.collection:
        source, images = Collection.open(args.collection), Path(args.images)
    else:
        source, folder = indexed_dataset("caltech101", workdir)
        images = folder / "images"
    labels = folder_labels(images)

    rng = np.random.default_rng(0)
    classes = labels.reindex(source.paths).to_numpy()
    in_a = np.zeros(len(source), bool)
    for name in np.unique(classes.astype(str)):
        rows = rng.permutation(np.flatnonzero(classes == name))
        in_a[rows[: (len(rows) + 1) // 2]] = True
    for name in ("a.lab", "b.lab"):
        if (workdir / name).exists():
            raise SystemExit(f"{workdir / name} exists: use a new --workdir")
    a = half(source, np.flatnonzero(in_a), workdir / "a.lab")
    b = half(source, np.flatnonzero(~in_a), workdir / "b.lab")
    assert not set(a.images["sha256"]) & set(b.images["sha256"])

    words = {w: c for w, c in caltech_query_words(labels).items() if a.search(w, k=1).attrs["kind"] != "imagenet"}
    before = p_at_20(b, labels, words)
    simulate_feedback(a, labels, words, rounds=args.rounds, teach_first=True)
    in_a_after = p_at_20(a, labels, words)

    started = time.perf_counter()
    path = a.export_words(workdir / "words.zip")
    export_s = time.perf_counter() - started
    started = time.perf_counter()
    report = b.import_words(path)
    import_s = time.perf_counter() - started
    after = p_at_20(b, labels, words)
    again = b.import_words(path)
    after_again = p_at_20(b, labels, words)

    table = pd.DataFrame({"B before": before, "A after feedback": in_a_after, "B after import": after}).round(3)
    table.index.name = "word"
    n_rows = report.table[["judgments", "examples"]].to_numpy().sum()
    lines = [
        "# Words that travel: learned in one half of Caltech-101, used in the other",
        "",
        f"Command: `python scripts/evaluate_word_transfer.py {' '.join(sys.argv[1:])}`",
        "",
        versions_line(),
        "",
        f"Two collections of {len(a):,} and {len(b):,} images (each Caltech-101 class split in half, no image in both; "
        f"model {source.model_name}). In A a simulated user teaches each of the {len(words)} words ImageNet does not cover "
        f"with one example and judges {args.rounds} page{'s' if args.rounds != 1 else ''} of 20; the words are exported "
        f"({path.stat().st_size / 1e6:.2f} MB, {n_rows:,} judgments and examples, {export_s:.2f} s) and imported into B "
        f"({import_s:.2f} s), where nobody judged anything. P@20 in B:",
        "",
        "| | mean P@20 over the words |",
        "|---|---:|",
        f"| B, before the import (vocabulary only) | {before.mean():.3f} |",
        f"| B, after the import | **{after.mean():.3f}** |",
        f"| B, after importing the same file again ({again.n_added} rows added) | {after_again.mean():.3f} |",
        f"| A, where the feedback was given (judged images ranked first) | {in_a_after.mean():.3f} |",
        "",
        f"Words better in B after the import: {(after > before).sum()} of {len(words)}; worse: {(after < before).sum()}.",
        "",
        table.to_markdown(),
        "",
    ]
    out = ROOT / "results" / "word_transfer.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines[:18]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
