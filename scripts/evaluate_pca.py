"""How many principal axes word learning needs: ``lab evaluate`` with the scoring space forced to PCA-d.

    flock /tmp/lab-heavy.lock python scripts/evaluate_pca.py --workdir DIR

Above ``SearchConfig.pca_threshold`` images (50,000) word models score PCA
projections of the embeddings instead of the embeddings themselves, which
sets the memory and the refit time of a large collection
(``results/bench_search_scaling.md``). A large labeled collection is not at
hand, so the projection is forced onto the labeled ones (``pca_threshold=0``)
and ``lab.evaluation.evaluate`` is run for each number of axes, through the
same code path as ``lab evaluate``. Writes ``results/evaluation_pca.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab.datasets import indexed_dataset  # noqa: E402
from lab.evaluation import collection_labels, evaluate  # noqa: E402
from lab.installed import versions_line  # noqa: E402
from lab.search.config import SearchConfig  # noqa: E402
from lab.wording import plural  # noqa: E402

SETTINGS = {"full embeddings (no PCA)": None, "PCA-256": 256, "PCA-128 (default)": 128, "PCA-64": 64}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="where datasets are unpacked and indexed (reused across runs)")
    parser.add_argument("--out", default=str(ROOT / "results" / "evaluation_pca.md"))
    args = parser.parse_args()
    rows = []
    for name in ("flower_photos_600", "caltech101"):
        col, folder = indexed_dataset(name, args.workdir)
        labels = collection_labels(col, folder / "labels.csv")
        for setting, dimensions in SETTINGS.items():
            col.config = SearchConfig() if dimensions is None else SearchConfig(pca_threshold=0, pca_dimensions=dimensions)
            summary = evaluate(col, labels, n_queries=20, progress=False).summary()
            rows.append(
                {
                    "collection": name,
                    "scoring space": setting,
                    **{f"found in {plural(i, 'page')}": summary[f"found_in_{i}_pages"] for i in (1, 2, 3, 4)},
                    "words never found": summary["words_never_found"],
                    "teach-once P@20": summary["teach_once_p@20"],
                    "one example + one judged page, P@20": summary["first_page_p@20_after_one_example_and_one_judged_page"],
                }
            )
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    text = "\n".join(
        [
            "# Word learning in PCA-reduced scoring spaces",
            "",
            f"Command: `python scripts/evaluate_pca.py {' '.join(sys.argv[1:])}`",
            "",
            versions_line(),
            "",
            "`lab.evaluation.evaluate` (the simulated user of `lab evaluate`, every word of the labels, 4 pages of 20; "
            "teach-once: mean of 3 seeded examples) with the scoring space forced to the given number of principal axes "
            "(`SearchConfig(pca_threshold=0, pca_dimensions=d)`). Found: relevant images per word after that many judged pages.",
            "",
            table.to_markdown(index=False, floatfmt=".3f"),
            "",
        ]
    )
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
