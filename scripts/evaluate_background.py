"""Background negatives on and off, side by side: ``lab evaluate`` on the five shared collections.

    flock /tmp/lab-heavy.lock python scripts/evaluate_background.py --workdir DIR

For each collection of ``scripts/evaluate_collections.py`` (Caltech-101,
flower_photos_600, the two look-alike subsets and CIFAR-10), runs
:func:`lab.evaluation.evaluate` (the simulated user of ``lab evaluate``, the
panel's ``SearchSession``) with ``SearchConfig(background_weight=0)``, the
learner before background negatives, and with the defaults; writes the
relevant images found per word and, for CIFAR-10, where the trap showed,
each word's new-page precision by round, to ``results/background_negatives.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab.datasets import evaluation_collections  # noqa: E402
from lab.evaluation import collection_labels, evaluate  # noqa: E402
from lab.installed import versions_line  # noqa: E402
from lab.search import SearchConfig  # noqa: E402

SETTINGS = {"off (background_weight=0)": SearchConfig(background_weight=0.0), "on (the default)": SearchConfig()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="where datasets are unpacked and indexed (reused across runs)")
    parser.add_argument("--out", default=str(ROOT / "results" / "background_negatives.md"))
    args = parser.parse_args()
    started = time.time()
    collections = evaluation_collections(args.workdir, cifar10=True)
    rows, cifar = [], {}
    for name, (col, labels_csv) in collections.items():
        labels = collection_labels(col, labels_csv)
        for setting, config in SETTINGS.items():
            col.config = config
            result = evaluate(col, labels, n_queries=20, seeds=1, progress=False)
            summary = result.summary()
            uncovered = result.words.loc[result.words["kind"] != "imagenet", "word"]
            found = result.rounds[result.rounds["word"].isin(uncovered)].pivot(index="word", columns="round", values="found")
            rows.append({"collection": name, "background negatives": setting, "words": summary["n_words"],
                         "found in 3 pages": summary["found_in_3_pages"], "found in 4 pages": summary["found_in_4_pages"],
                         "uncovered words: found in 3 pages": found[2].mean() if len(found) else float("nan"),
                         "never found": summary["words_never_found"], "lowest new-page precision": result.rounds["precision"].min()})
            if name == "cifar10":
                cifar[setting] = result.words.set_index("word")["new_page_precision"]
            print(rows[-1], flush=True)
        col.config = SearchConfig()
    text = [
        "# Background negatives, on and off",
        "",
        f"Command: `python scripts/evaluate_background.py {' '.join(sys.argv[1:])}`",
        "",
        versions_line(),
        "",
        "`lab.evaluation.evaluate` (the simulated user of `lab evaluate`: every label's word, 4 judged pages of 20, "
        "exploration seed 0) with `SearchConfig(background_weight=0)` and with the defaults. Found: relevant images per "
        "word after that many pages (mean over words; 'uncovered words': those ImageNet does not cover).",
        "",
        pd.DataFrame(rows).to_markdown(index=False, floatfmt=".2f"),
        "",
        "CIFAR-10, new-page precision by round, per word:",
        "",
        pd.DataFrame(cifar).to_markdown(),
        "",
        f"{time.time() - started:.0f} s.",
        "",
    ]
    Path(args.out).write_text("\n".join(text))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
