"""Query expansion at every step against expansion only while a word has few examples, side by side.

    flock /tmp/lab-heavy.lock python scripts/evaluate_expansion.py --workdir DIR [--seeds 3]

Runs :func:`lab.evaluation.evaluate_settings` (the simulated user of
``lab evaluate``, the panel's ``SearchSession``, every label's word, 4 judged
pages of 20) on the collections of ``scripts/evaluate_collections.py``
(CIFAR-10 included) and on flower_photos_600 and CIFAR-10 cut to 80 images a
label, the class size of issue 8's 17-species collection
(:func:`lab.datasets.cut_per_label`), with
``SearchConfig(expansion_until=10**9)`` (expansion at every step, the learner
before) and with the defaults, for several exploration seeds.
Writes ``results/expansion_until.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab import Collection  # noqa: E402
from lab.datasets import cut_per_label, evaluation_collections  # noqa: E402
from lab.evaluation import evaluate_settings  # noqa: E402
from lab.installed import versions_line  # noqa: E402
from lab.search import SearchConfig  # noqa: E402

BEFORE, AFTER = "at every step (before)", f"while fewer than {SearchConfig().expansion_until} relevant examples (the default)"
SETTINGS = {BEFORE: SearchConfig(expansion_until=10**9), AFTER: SearchConfig()}
PER_LABEL = 80


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="where datasets are unpacked and indexed (reused across runs)")
    parser.add_argument("--seeds", type=int, default=3, help="exploration seeds per setting")
    parser.add_argument("--out", default=str(ROOT / "results" / "expansion_until.md"))
    args = parser.parse_args()
    started = time.time()
    collections = evaluation_collections(args.workdir, cifar10=True)
    for name in ("flower_photos_600", "cifar10"):
        source, labels_csv = collections[name]
        cut = f"{name}_{PER_LABEL}"
        cut_labels = cut_per_label(source, labels_csv, args.workdir, cut, PER_LABEL)
        collections[cut] = (Collection.open(Path(args.workdir) / f"{cut}.lab"), cut_labels)
    runs, results = evaluate_settings(collections, SETTINGS, seeds=range(args.seeds))
    found = runs.pivot_table(index=["collection", "setting"], columns="seed", values="found in 4 pages")
    found.columns = [f"found in 4 pages, seed {seed}" for seed in found.columns]
    uncovered = runs.pivot_table(index=["collection", "setting"], columns="seed", values="uncovered words: found in 3 pages", dropna=False)
    uncovered.columns = [f"uncovered words: found in 3 pages, seed {seed}" for seed in uncovered.columns]
    table = pd.concat(
        [
            found,
            uncovered,
            runs.groupby(["collection", "setting"]).agg(
                **{"found in 4 pages (mean)": ("found in 4 pages", "mean"), "found in 3 pages (mean)": ("found in 3 pages", "mean"),
                   "uncovered words: found in 3 pages (mean)": ("uncovered words: found in 3 pages", "mean"),
                   "never found (most)": ("never found", "max"), "lowest new-page precision": ("lowest new-page precision", "min")}
            ),
        ],
        axis=1,
    ).reindex(pd.MultiIndex.from_product([list(collections), list(SETTINGS)]))
    precision = pd.DataFrame(
        {(name, setting): pd.DataFrame([results[name, setting, seed].summary()["new_page_precision_by_round"] for seed in range(args.seeds)]).mean()
         for name in collections for setting in SETTINGS}
    ).T
    precision.columns = [f"page {page + 1}" for page in precision.columns]
    text = [
        "# Query expansion: at every step, or while a word has few examples",
        "",
        f"Command: `python scripts/evaluate_expansion.py {' '.join(sys.argv[1:])}`",
        "",
        versions_line(),
        "",
        f"`lab.evaluation.evaluate_settings`: the simulated user of `lab evaluate` (every label's word, 4 judged pages of 20) with "
        f"`SearchConfig(expansion_until=10**9)` and with the defaults, exploration seeds 0 to {args.seeds - 1}. "
        f"`*_{PER_LABEL}`: the collection cut to {PER_LABEL} images a label (seed 0), the class size of issue 8's 17-species collection (80 photos a species). "
        "Found: relevant images per word (mean over words); 'uncovered words': those ImageNet does not cover.",
        "",
        table.to_markdown(floatfmt=".2f"),
        "",
        "New-page precision by page (mean over words and seeds):",
        "",
        precision.to_markdown(floatfmt=".2f"),
        "",
        f"{time.time() - started:.0f} s.",
        "",
    ]
    Path(args.out).write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
