"""Evaluate search on Caltech-101: keywords, simulated feedback, teaching, query by example.

    python scripts/evaluate_caltech.py [--collection PATH] [--rounds 6]

Caltech-101's folder names are the query words and its labels the ground
truth (``lab.experiments.caltech_query_words`` lists the few renamings, e.g.
``car_side`` -> "car", and the classes that are kinds of another word, e.g.
Windsor chairs are chairs). Words are split by what the vocabulary makes of
them: ImageNet terms, and words ImageNet does not cover (WordNet relatives
only, or unknown). Writes markdown and CSV tables to ``results/``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab import Collection  # noqa: E402
from lab.datasets import read_labels, unpack_dataset  # noqa: E402
from lab.experiments import caltech_query_words, keyword_precision, query_by_example_table, simulate_feedback, teach_once  # noqa: E402
from lab.installed import versions_line  # noqa: E402

RESULTS = ROOT / "results"


def fresh_feedback(collection: Path) -> Collection:
    """The collection with an empty feedback store (each experiment starts from none)."""
    for suffix in ("", "-wal", "-shm"):
        (collection / f"feedback.sqlite{suffix}").unlink(missing_ok=True)
    return Collection.open(collection)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", help="an existing Caltech-101 collection to reuse (its feedback is erased)")
    parser.add_argument("--workdir", help="where to unpack and index (default a temp dir)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--queries", type=int, default=1000, help="query-by-example queries")
    parser.add_argument("--seeds", type=int, default=3, help="repetitions of the one-example test, each with other examples")
    args = parser.parse_args()
    command = "python scripts/evaluate_caltech.py " + " ".join(sys.argv[1:])

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="lab-eval-"))
    folder = unpack_dataset("caltech101", workdir / "data")
    labels = read_labels(folder).set_index("path")["label_name"]
    collection = Path(args.collection) if args.collection else workdir / "caltech101.lab"
    col = Collection.open(collection, create=True)
    col.add(folder / "images")
    words = caltech_query_words(labels)

    started = time.time()
    col = fresh_feedback(collection)
    keywords = keyword_precision(col, labels, words)
    covered = keywords[keywords["kind"] == "imagenet"]
    uncovered_words = {w: words[w] for w in keywords.loc[keywords["kind"] != "imagenet", "word"]}

    # the simulated user works as in the panel: pages short of evidence are filled with varied images
    feedback = simulate_feedback(col, labels, uncovered_words, rounds=args.rounds, explore=True)
    taught = []
    for seed in range(args.seeds):  # a different random example per word each time
        col = fresh_feedback(collection)
        taught.append(teach_once(col, labels, uncovered_words, seed=seed))
    taught = pd.concat(taught, ignore_index=True)
    col = fresh_feedback(collection)
    taught_rounds = simulate_feedback(col, labels, uncovered_words, rounds=args.rounds, teach_first=True)
    col = fresh_feedback(collection)
    qbe = query_by_example_table(col, labels, n_queries=args.queries)
    fresh_feedback(collection)

    keywords.to_csv(RESULTS / "caltech_keywords.csv", index=False)
    feedback.to_csv(RESULTS / "caltech_feedback_rounds.csv", index=False)
    taught_rounds.to_csv(RESULTS / "caltech_teach_then_rounds.csv", index=False)
    taught.to_csv(RESULTS / "caltech_teach_once.csv", index=False)
    qbe.to_csv(RESULTS / "caltech_query_by_example.csv", index=False)

    kinds = keywords.groupby("kind")["word"].count().to_dict()
    columns = ["precision", "achievable", "relative", "first_page_p@20", "found"]
    with_evidence = set(feedback.loc[(feedback["round"] == 0) & (feedback["precision"] > 0), "word"])

    def by_round(frame):
        return frame.groupby("round")[columns].mean().reset_index().to_markdown(index=False, floatfmt=".3f")

    def at(frame, round_, column):
        return frame.loc[frame["round"] == round_, column].mean()

    lines = [
        "# Search evaluation on Caltech-101",
        "",
        f"Command: `{command}` ({len(col)} images, model {col.model_name}; took {time.time() - started:.0f} s).",
        "",
        versions_line(),
        "",
        f"Query words: {len(words)} (Caltech-101 class names; by vocabulary kind: {kinds}).",
        "",
        "## Keyword search, ImageNet terms, no feedback",
        "",
        f"Mean P@20 over {len(covered)} words: **{covered['p@20'].mean():.3f}** (target >= 0.95; the original system: 0.90). "
        f"Mean AP: {covered['ap'].mean():.3f}.",
        "",
        "Words below P@20 = 0.95:",
        "",
        covered[covered["p@20"] < 0.95].sort_values("p@20")[["word", "n_relevant", "p@20", "ap"]].to_markdown(index=False, floatfmt=".2f"),
        "",
        "## Words ImageNet does not cover: a simulated user judges one page of 20 per round",
        "",
        "Columns, mean over words: `precision` of the 20 best results not yet judged (the page shown in that round; "
        "round 0 = before any feedback); `achievable`, the best possible given the relevant images still unjudged "
        "(small classes run out); `relative` = precision / achievable; `first_page_p@20`, P@20 of the ranking "
        "the user sees, judged-relevant images first; `found`, relevant images marked so far (a system that finds more "
        "of a small class early shows a lower `precision` later, so `found` is the fairer comparison between methods). "
        "The original system needed 6 rounds to reach P@20 = 0.75.",
        "",
        f"### All {len(uncovered_words)} uncovered words, starting from the vocabulary's related classes "
        "(pages short of evidence filled with varied images to judge, as the panel does)",
        "",
        by_round(feedback),
        "",
        f"### The {len(with_evidence)} of them whose first page showed at least one relevant image",
        "",
        by_round(feedback[feedback["word"].isin(with_evidence)]),
        "",
        f"### All {len(uncovered_words)} uncovered words, taught with one example image first",
        "",
        by_round(taught_rounds),
        "",
        f"After two rounds (page of round 2): precision **{at(feedback, 2, 'precision'):.3f}** from the prior, "
        f"**{at(taught_rounds, 2, 'precision'):.3f}** after one example (target >= 0.90); "
        f"first-page P@20 **{at(feedback, 2, 'first_page_p@20'):.3f}** / **{at(taught_rounds, 2, 'first_page_p@20'):.3f}**; "
        f"relevant images found in the first three pages **{at(feedback, 2, 'found'):.1f}** / **{at(taught_rounds, 2, 'found'):.1f}**.",
        "",
        "## Same words, taught with one example image each, no judgments",
        "",
        f"Mean P@20 (the example itself left out): **{taught['p@20'].mean():.3f}** (target >= 0.90), "
        f"over {args.seeds} random examples per word; per draw: "
        + ", ".join(f"{value:.3f}" for value in taught.groupby("seed")["p@20"].mean())
        + ".",
        "",
        "## Query by example",
        "",
        f"{qbe.attrs['n_queries']} query images (seeded sample), relevant = same Caltech class, the query left out; "
        "mAP ranks the whole collection.",
        "",
        qbe.to_markdown(index=False, floatfmt=".3f"),
        "",
        "Per-word figures: `caltech_keywords.csv`, `caltech_feedback_rounds.csv`, `caltech_teach_then_rounds.csv`, "
        "`caltech_teach_once.csv`, `caltech_query_by_example.csv`.",
    ]
    text = "\n".join(lines) + "\n"
    (RESULTS / "caltech_search_evaluation.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
