"""Issue 8's design choices side by side: the simulated user with and without broad exploration groups, the logistic-only learner, the confident discount, background negatives and expansion only while a word has few examples.

    python scripts/evaluate_design_choices.py --workdir DIR

On each shared labeled collection (Caltech-101's words ImageNet does not
cover, flower_photos_600, and the two look-alike subsets cut from Caltech-101
by :func:`lab.datasets.cut_lookalike_subsets`), the panel's simulated user
(:func:`lab.experiments.simulate_feedback`, the same
:class:`lab.session.SearchSession` paging) judges four pages of 20 per word
under six configurations of :class:`lab.search.SearchConfig`:

* ``before``: finer exploration groups only and the learner before issue 8's
  last change (Rocchio's direction plus a logistic regression's, ``C=1``);
* ``broad groups``: exploration visits 15 broad groups first;
* ``+ logistic alone``: and the logistic direction alone, ``C=10``;
* ``+ confident discount``: and a word ImageNet does not cover discounts
  the prior of images the network is sure of
  (``SearchConfig.confident_discount``);
* ``+ background negatives``: and the logistic regression also contrasts
  the relevant images with a sample of the collection while fewer images
  were judged not relevant than relevant (``SearchConfig.background_weight``);
* ``+ expansion while few examples (now)``, the defaults: and query
  expansion only while a word has fewer than 5 relevant examples
  (``SearchConfig.expansion_until``; before, at every step).

Each collection is also searched with its labels **renamed**, so the
vocabulary cannot help: to made-up words it does not know ("unknown"), and
to real words whose vocabulary classes have nothing to do with the renamed
class ("misleading": "tulip" -> Tibetan terrier, "metronome" -> photocopier;
on Caltech-101 some of these words name another class of the collection,
whose images the vocabulary then points at). That is the situation of a fine-grained collection
whose species ImageNet does not name, which we do not have. Writes
``results/evaluation_design_choices.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab import Collection  # noqa: E402
from lab.datasets import evaluation_collections  # noqa: E402
from lab.evaluation import collection_labels  # noqa: E402
from lab.experiments import (  # noqa: E402
    caltech_query_words,
    keyword_precision,
    simulate_feedback,
    uncovered_words,
)
from lab.installed import versions_line  # noqa: E402
from lab.search import SearchConfig  # noqa: E402

BEFORE_EXPANSION_UNTIL = 10**9  # query expansion at every step, as before SearchConfig.expansion_until
CONFIGURATIONS = {
    "before": SearchConfig(explore_n_broad=0, logistic_C=1.0, keep_rocchio=True, confident_discount=0.0, background_weight=0.0, expansion_until=BEFORE_EXPANSION_UNTIL),
    "broad groups": SearchConfig(logistic_C=1.0, keep_rocchio=True, confident_discount=0.0, background_weight=0.0, expansion_until=BEFORE_EXPANSION_UNTIL),
    "+ logistic alone": SearchConfig(confident_discount=0.0, background_weight=0.0, expansion_until=BEFORE_EXPANSION_UNTIL),
    "+ confident discount": SearchConfig(background_weight=0.0, expansion_until=BEFORE_EXPANSION_UNTIL),
    "+ background negatives": SearchConfig(expansion_until=BEFORE_EXPANSION_UNTIL),
    "+ expansion while few examples (now)": SearchConfig(),
}
# real words the vocabulary maps to ImageNet classes unrelated to what the renamed folders hold
MISLEADING = ["tulip", "iris", "pansy", "daffodil", "lotus", "gramophone", "metronome", "stapler", "bass", "anchor", "ketch", "scissors", "wheelchair", "okapi", "octopus"]


def made_up(i: int) -> str:
    """A word no vocabulary knows: "qqaaa", "qqbaa", ..."""
    return "qq" + "".join(chr(97 + (i // 26**j) % 26) for j in range(3))


def word_sets(words: dict[str, list[str]]) -> dict[str, dict[str, list[str]]]:
    """The labels' words, and the same classes renamed to made-up and to misleading words (at most 15)."""
    classes = list(words.values())[: len(MISLEADING)]
    return {
        "as labeled": words,
        "renamed: unknown": {made_up(i): c for i, c in enumerate(classes)},
        "renamed: misleading": {MISLEADING[i]: c for i, c in enumerate(classes)},
    }


def run(col: Collection, labels: pd.Series, words: dict[str, list[str]], config: SearchConfig, rounds: int, seeds: int) -> dict:
    """Relevant images found after each page, words with a hit on page 1, words never found: means over ``seeds`` exploration seeds.

    ``col.config`` is restored afterwards.
    """
    saved = col.config
    found = []
    try:
        for seed in range(seeds):
            col.config = dataclasses.replace(config, explore_seed=seed)
            with col.scratch_feedback():
                simulated = simulate_feedback(col, labels, words, rounds=rounds - 1)
            found.append(simulated.pivot(index="word", columns="round", values="found"))
    finally:
        col.config = saved
    last = found[0].columns[-1]
    row = {f"found in {r + 1}": round(float(np.mean([f[r].mean() for f in found])), 1) for r in found[0].columns}
    row["found on page 1"] = f"{np.mean([(f[0] > 0).sum() for f in found]):.1f} / {len(found[0])}"
    row["never found"] = round(float(np.mean([(f[last] == 0).sum() for f in found])), 1)
    # the page of each found word's first relevant image, the latest over words and seeds
    first_pages = [int((f.loc[word] > 0).to_numpy().argmax()) + 1 for f in found for word in f.index if f.loc[word, last] > 0]
    row["latest first page"] = max(first_pages) if first_pages else None
    row[f"found in {rounds}, per seed"] = " / ".join(f"{f[last].mean():.1f}" for f in found)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="where datasets are unpacked and indexed (reused across runs)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=3, help="exploration seeds to average over (SearchConfig.explore_seed 0, 1, ...)")
    parser.add_argument("--out", default=str(ROOT / "results"))
    args = parser.parse_args()
    started = time.time()
    collections = {name: (col, collection_labels(col, labels)) for name, (col, labels) in evaluation_collections(args.workdir).items()}
    rows, n_uncovered = [], 0
    for name, (col, labels) in collections.items():
        words = caltech_query_words(labels[labels.index.isin(set(col.paths))])
        if name == "caltech101":
            with col.scratch_feedback():
                words = uncovered_words(keyword_precision(col, labels, words), words)
                n_uncovered = len(words)
        for word_set, renamed in word_sets(words).items():
            for label, config in CONFIGURATIONS.items():
                rows.append({"collection": name, "words": word_set, "configuration": label, **run(col, labels, renamed, config, args.rounds, args.seeds)})
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    command = "python scripts/evaluate_design_choices.py " + " ".join(sys.argv[1:])
    text = [
        "# Issue 8's design choices, side by side",
        "",
        f"Command: `{command}`",
        "",
        versions_line(),
        "",
        f"The simulated user of `lab evaluate` (a `SearchSession` per word, {args.rounds} judged pages of 20) under {len(CONFIGURATIONS)} "
        "configurations (see the script's docstring): `before` explores the finer groups only and learns with Rocchio's "
        f"direction plus a logistic regression's (`C=1`); `broad groups` visits {SearchConfig().explore_n_broad} broad groups "
        f"first; `+ logistic alone` also learns with the logistic direction alone (`C={SearchConfig().logistic_C:g}`); "
        "`+ confident discount` also discounts a related word's prior where the network is sure of "
        f"another class (`confident_discount={SearchConfig().confident_discount:g}`); `+ background negatives` "
        "also contrasts a word's relevant images with a sample of the collection while fewer were judged not relevant than relevant "
        f"(`background_weight={SearchConfig().background_weight:g}`); `+ expansion while few examples (now)`, the default, also expands "
        f"the query only while a word has fewer than {SearchConfig().expansion_until} relevant examples (before, at every step). "
        f"Caltech-101: its {n_uncovered} words ImageNet does not cover. Renamed words: the same classes under made-up words "
        "the vocabulary does not know, or under real words whose classes have nothing to do with them (at most "
        f"{len(MISLEADING)} classes a collection). Relevant images found per word after each page (mean over words), words "
        f"with a relevant image on the first page and words never found, each the mean over {args.seeds} exploration seeds "
        "(`SearchConfig.explore_seed`: the sample and the k-means of the groups); the latest page of a first relevant "
        "image is the latest over seeds and the words found; the last column gives each seed's mean.",
        "",
        table.to_markdown(index=False),
        "",
        f"{time.time() - started:.0f} s.",
        "",
    ]
    out = Path(args.out) / "evaluation_design_choices.md"
    out.write_text("\n".join(text))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
