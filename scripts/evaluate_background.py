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
from lab.evaluation import evaluate_settings  # noqa: E402
from lab.installed import versions_line  # noqa: E402
from lab.search import SearchConfig  # noqa: E402

SETTINGS = {"off (background_weight=0)": SearchConfig(background_weight=0.0), "on (the default)": SearchConfig()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="where datasets are unpacked and indexed (reused across runs)")
    parser.add_argument("--out", default=str(ROOT / "results" / "background_negatives.md"))
    args = parser.parse_args()
    started = time.time()
    runs, results = evaluate_settings(evaluation_collections(args.workdir, cifar10=True), SETTINGS)
    columns = ["collection", "setting", "words", "found in 3 pages", "found in 4 pages", "uncovered words: found in 3 pages", "never found", "lowest new-page precision"]
    table = runs[columns].rename(columns={"setting": "background negatives"})
    cifar = {setting: results["cifar10", setting, 0].words.set_index("word")["new_page_precision"] for setting in SETTINGS}
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
        table.to_markdown(index=False, floatfmt=".2f"),
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
