"""``lab evaluate``: how well search works on a labeled folder, measured the way users search.

Labels come from a CSV (``path,label_name``, paths relative to the CSV) or,
by default, from each image's parent folder name; each label is a query word
(underscores become spaces; Caltech-101's few odd names are mapped, see
:data:`lab.experiments.CALTECH_QUERY_WORDS`). Four experiments, each on a
throw-away feedback store (:meth:`lab.Collection.scratch_feedback`), so the
collection's own judgments are never touched:

* keyword search with no feedback: P@20 and AP per word, the classes the
  vocabulary looks for and those the network names the word's images
  (:func:`lab.experiments.keyword_precision`), so a word that is never found
  shows why;
* query by example: P@5 / P@20 / mAP for each metric x layer (every labeled
  image whose label has another image as a query, up to ``n_queries``, a
  seeded sample above);
* the simulated user (:func:`lab.experiments.simulate_feedback`): a
  :class:`lab.session.SearchSession` per word, as the panel pages, judging
  every image of every page from the labels; per word the precision of each
  new page, what was achievable, relevant images found, and the page of the
  first relevant image;
* teach once: P@20 after one example image of the word (mean of ``seeds``
  seeded draws), and the first page's P@20 after that example and one
  judged page.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .datasets import labels_by_path
from .experiments import (
    caltech_query_words,
    keyword_precision,
    query_by_example_table,
    query_word,
    simulate_feedback,
    teach_once,
)
from .json_output import dumps
from .validation import has_letters
from .wording import empty_collection, listing, plural

__all__ = ["Evaluation", "check_result_name", "collection_labels", "evaluate", "evaluate_settings"]


def collection_labels(col, labels_csv: str | os.PathLike | None = None) -> pd.Series:
    """Label name per image path: from ``labels_csv`` (``path,label_name``, :func:`lab.datasets.labels_by_path`) or parent folder names.

    Paths in the CSV are relative to it (or absolute). A blank label is kept
    as ``""``: :func:`evaluate` leaves such images out and says so.

    Raises
    ------
    ValueError
        Naming the file, when it cannot be read as a labels file.
    """
    if labels_csv is None:
        return pd.Series({path: Path(path).parent.name for path in col.paths}, name="label_name")
    return labels_by_path(labels_csv)


def check_result_name(name: str) -> str:
    """``name`` if it can stem the result files (``evaluation`` -> ``evaluation.md``, ...), else a ValueError."""
    if not isinstance(name, str) or not name.strip() or name != Path(name).name or name.startswith("."):
        raise ValueError(f"the name of the result files must be a plain file name such as 'evaluation', got {name!r}")
    if len(f"{name}_query_by_example.csv".encode()) > 255:  # the longest file it names, against the usual limit
        raise ValueError(f"the name of the result files is too long for a file name ({len(name)} characters)")
    return name


@dataclass
class Evaluation:
    """Tables of one evaluation run (see :func:`evaluate`)."""

    words: pd.DataFrame  # one row per word: kind, n_relevant, p@<k>, first_relevant_page, found, teach_once_p@<k>, vocabulary, named_by_vocabulary, network_calls (k: the page size, facts["k"])
    rounds: pd.DataFrame  # one row per (word, round) of the simulated user
    keywords: pd.DataFrame
    query_by_example: pd.DataFrame
    teach_once: pd.DataFrame
    taught_rounds: pd.DataFrame  # the simulated user after teaching one example: one row per (word, round)
    facts: dict = field(default_factory=dict)

    @property
    def k(self) -> int:
        """The page size the evaluation ran with (20 unless ``evaluate(k=...)`` said otherwise)."""
        return int(self.facts.get("k", 20))

    def found_by_pages(self) -> pd.Series:
        """Relevant images the simulated user found after each number of judged pages (mean over words), indexed 1, 2, ..."""
        rounds = self.rounds
        return pd.Series({r + 1: float(rounds.loc[rounds["round"] == r, "found"].mean()) for r in sorted(rounds["round"].unique())}, dtype=float)

    def summary(self) -> dict:
        """The headline numbers (means over words); ``p@<k>`` is precision in the first ``k`` results (:attr:`k`)."""
        words, rounds, p = self.words, self.rounds, f"p@{self.k}"
        per_round = rounds.groupby("round")[["precision", "achievable"]].mean()
        found = {f"found_in_{pages}_pages": value for pages, value in self.found_by_pages().items()}
        first = words["first_relevant_page"]
        return {
            "n_words": int(len(words)),
            f"keyword_{p}": float(words[p].mean()),
            f"keyword_{p}_imagenet_words": float(words.loc[words["kind"] == "imagenet", p].mean()) if (words["kind"] == "imagenet").any() else None,
            "new_page_precision_by_round": [round(float(v), 4) for v in per_round["precision"]],
            "achievable_by_round": [round(float(v), 4) for v in per_round["achievable"]],
            **found,
            "words_never_found": int(first.isna().sum()),
            "latest_first_relevant_page": None if first.isna().all() else int(first.max()),
            f"teach_once_{p}": float(self.teach_once[p].mean()),
            f"first_page_{p}_after_one_example_and_one_judged_page": float(
                self.taught_rounds.loc[self.taught_rounds["round"] == 1, f"first_page_{p}"].mean()
            ),
        }

    def by_kind(self) -> pd.DataFrame:
        """Means per kind of word (ImageNet term, related to ImageNet classes, unknown): found per page count."""
        rounds = self.rounds.merge(self.words[["word", "kind"]], on="word")
        found = rounds.pivot_table(index="kind", columns="round", values="found", aggfunc="mean")
        found.columns = [f"found in {plural(r + 1, 'page')}" for r in found.columns]
        p = f"p@{self.k}"
        table = self.words.groupby("kind").agg(words=("word", "count"), **{f"keyword_p{self.k}": (p, "mean")}, never_found=("first_relevant_page", lambda f: int(f.isna().sum())),
                                               latest_first_page=("first_relevant_page", "max"), **{f"teach_once_p{self.k}": (f"teach_once_{p}", "mean")})
        table = table.join(found)
        # counts as whole numbers; no first page (no word of the kind found) as "-"
        table["latest_first_page"] = table["latest_first_page"].astype("Int64").astype(object).where(table["latest_first_page"].notna(), "-")
        return table

    def to_markdown(self) -> str:
        s, k, p = self.summary(), self.k, f"p@{self.k}"
        lines = [
            f"# Evaluation of {self.facts.get('collection', 'a collection')}",
            "",
            f"Command: `{self.facts.get('command', '')}`",
            "",
            self.facts.get("versions", ""),
            "",
            f"{self.facts.get('n_images', '?')} images ({self.facts.get('n_labeled', '?')} labeled), {plural(s['n_words'], 'word')}, "
            f"model {self.facts.get('model', '?')}; {self.facts.get('seconds', 0):.0f} s.",
            "",
            *self._notice_lines(),
            "## Summary (means over words)",
            "",
            f"- keyword search, no feedback: P@{k} {s[f'keyword_{p}']:.3f}"
            + (f" ({s[f'keyword_{p}_imagenet_words']:.3f} for ImageNet terms)" if s[f"keyword_{p}_imagenet_words"] is not None else ""),
            f"- the simulated user (a page of {k} judged per round, as the panel pages): new-page precision by round "
            + ", ".join(f"{v:.2f}" for v in s["new_page_precision_by_round"])
            + " (achievable " + ", ".join(f"{v:.2f}" for v in s["achievable_by_round"]) + ")",
            "- relevant images found: " + ", ".join(f"{v:.1f} in {plural(pages, 'page')}" for pages, v in self.found_by_pages().items()),
            f"- words with no relevant image in {plural(self.rounds['round'].max() + 1, 'page')}: {s['words_never_found']}; "
            f"latest page of a first relevant image: {s['latest_first_relevant_page']}",
            f"- one taught example: P@{k} {s[f'teach_once_{p}']:.3f} (mean of {self.teach_once['seed'].nunique()} draws); "
            f"after one example and one judged page, first-page P@{k} {s[f'first_page_{p}_after_one_example_and_one_judged_page']:.3f}",
            "",
            *self._not_found_lines(),
            "## By kind of word",
            "",
            self.by_kind().to_markdown(floatfmt=".2f"),
            "",
            "## Per word",
            "",
            self.words.to_markdown(index=False, floatfmt=".2f"),
            "",
            "## Query by example",
            "",
            self._query_by_example_text(),
            "",
        ]
        return "\n".join(lines)

    def notices(self) -> list[str]:
        """What the evaluation left out (by reason, with names) and what it changed of what was asked, a sentence each."""
        left_out, notes = self.facts.get("left_out") or {}, self.facts.get("notes") or []
        return [f"left out, {reason}: {len(items)} ({listing(items)})" for reason, items in left_out.items()] + [f"note: {note}" for note in notes]

    def _notice_lines(self) -> list[str]:
        lines = [f"{notice[0].upper()}{notice[1:]}." for notice in self.notices()]
        return lines + [""] if lines else []

    def _query_by_example_text(self) -> str:
        table = self.query_by_example
        if table.empty:
            return "Not measured: no label has two images or more, so no query has another image of its label to find."
        return (f"{self.facts['n_queries']} queries: labeled images whose label has another image (a seeded sample above the limit).\n\n"
                + table.to_markdown(index=False, floatfmt=".3f"))

    def _not_found_lines(self) -> list[str]:
        """Markdown: each word the simulated user never found, with what the vocabulary and the network make of it."""
        lost = self.words[self.words["first_relevant_page"].isna()]
        if lost.empty:
            return []
        lines = [f"## Words not found in {plural(self.rounds['round'].max() + 1, 'page')}", "",
                 "Where the classes the vocabulary looks for are not what the network calls the word's images, only an "
                 "example image (`lab teach`, or query by example) leads to them.", ""]
        for row in lost.itertuples():
            looks_for = f"looks for {row.vocabulary} (the network's top class for {row.named_by_vocabulary:.0%} of them)" if row.vocabulary else "knows nothing of it"
            lines.append(f"- **{row.word}** ({plural(row.n_relevant, 'image')}): the vocabulary {looks_for}; the network calls them {row.network_calls}")
        return lines + [""]

    def save(self, out_dir: str | os.PathLike, name: str = "evaluation") -> list[Path]:
        """Write ``<name>.md``, ``<name>_words.csv``, ``<name>_rounds.csv``, ``<name>_query_by_example.csv`` and ``<name>.json``."""
        check_result_name(name)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = [out / f"{name}.md", out / f"{name}_words.csv", out / f"{name}_rounds.csv", out / f"{name}_query_by_example.csv", out / f"{name}.json"]
        written[0].write_text(self.to_markdown())
        self.words.to_csv(written[1], index=False)
        self.rounds.to_csv(written[2], index=False)
        self.query_by_example.to_csv(written[3], index=False)
        written[4].write_text(dumps(self.to_dict(), indent=1))
        return written

    def to_dict(self) -> dict:
        return {"facts": self.facts, "summary": self.summary(), "words": self.words.to_dict(orient="records"),
                "query_by_example": self.query_by_example.to_dict(orient="records")}


def evaluate(col, labels: pd.Series, words: list[str] | None = None, rounds: int = 4, k: int = 20, n_queries: int = 2000, seeds: int = 3, progress: bool = True) -> Evaluation:
    """Run the four experiments of ``lab evaluate`` on ``col`` with ground-truth ``labels``.

    Parameters
    ----------
    col : Collection
    labels : Series
        Label name indexed by absolute image path (:func:`collection_labels`).
    words : list of str, optional
        Query words to evaluate (default: every label's word).
    rounds : int
        Pages the simulated user judges per word.
    k : int
        Page size.
    n_queries : int
        Query-by-example queries (all labeled images whose label has another image, up to this many).
    seeds : int
        Draws of the taught example.
    progress : bool
        Show progress bars.
    """
    import time

    from tqdm.auto import tqdm

    started = time.time()
    for name, value, least in (("rounds", rounds, 1), ("k", k, 1), ("seeds", seeds, 1), ("n_queries", n_queries, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{name} must be a whole number, {least} or more, got {value!r}")
    if len(col) == 0:
        raise ValueError(empty_collection(col.root))
    notes = []
    pages = max(1, -(-len(col) // k))
    if rounds > pages:  # a page past the last image would judge nothing
        notes.append(f"{plural(rounds, 'page')} to judge per word, but the collection fills {plural(pages, 'page')} of {k}: {pages} judged")
        rounds = pages
    labels, query_words, left_out, merged = _usable_labels(col, labels)
    if merged:
        notes.append(f"labels that name one word (in capitals or not, singular or plural) are one label: {listing(merged)}")
    also = _left_out_clause(left_out)
    if words:  # as a label or as its word: "sports_car", "sports car" or "sports cars"
        by_key = {_word_key(word): word for word in query_words}
        words = list(dict.fromkeys(word if word in query_words else by_key.get(_word_key(word), query_word(word) or word) for word in words))
        unknown = [w for w in words if w not in query_words]
        if unknown:
            raise ValueError(f"no label for {', '.join(unknown)}; the labels give: {', '.join(sorted(query_words))}{also}")
        query_words = {w: query_words[w] for w in words}

    def each_word(experiment, desc):
        frames = []
        for word in tqdm(list(query_words), desc=desc, unit="word", disable=not progress):
            frames.append(experiment({word: query_words[word]}))
        return pd.concat(frames, ignore_index=True)

    with col.scratch_feedback():
        keywords = keyword_precision(col, labels, query_words, k=k)
    with col.scratch_feedback():
        simulated = each_word(lambda w: simulate_feedback(col, labels, w, rounds=rounds - 1, k=k, explore=True), "simulated user")
    taught = []
    for seed in range(seeds):
        with col.scratch_feedback():
            taught.append(each_word(lambda w: teach_once(col, labels, w, k=k, seed=seed + 1000 * len(taught)), f"teach once ({seed + 1}/{seeds})"))
    taught = pd.concat(taught, ignore_index=True)
    with col.scratch_feedback():
        taught_rounds = each_word(lambda w: simulate_feedback(col, labels, w, rounds=1, k=k, teach_first=True), "teach, then judge a page")
    qbe = query_by_example_table(col, labels, n_queries=n_queries)

    first = simulated[simulated["precision"] > 0].groupby("word")["round"].min() + 1
    last = simulated[simulated["round"] == simulated["round"].max()].set_index("word")
    per_word = keywords[["word", "kind", "n_relevant", f"p@{k}"]].set_index("word")
    per_word["first_relevant_page"] = first.reindex(per_word.index)
    per_word["found"] = last["found"].reindex(per_word.index)
    per_word["new_page_precision"] = simulated.groupby("word")["precision"].apply(lambda p: " ".join(f"{v:.2f}" for v in p)).reindex(per_word.index)
    per_word[f"teach_once_p@{k}"] = taught.groupby("word")[f"p@{k}"].mean().reindex(per_word.index)
    per_word[["vocabulary", "named_by_vocabulary", "network_calls"]] = keywords.set_index("word")[["vocabulary", "named_by_vocabulary", "network_calls"]]
    from .installed import versions_line

    facts = {"collection": str(col.root), "n_images": len(col), "n_labeled": int(len(labels)), "model": col.model_name, "rounds": rounds, "k": k,
             "n_queries": int(qbe.attrs.get("n_queries", 0)), "seconds": time.time() - started, "versions": versions_line(), "left_out": left_out, "notes": notes}
    return Evaluation(per_word.reset_index(), simulated, keywords, qbe, taught, taught_rounds, facts)


def evaluate_settings(collections: dict, settings: dict, seeds: Sequence[int] = (0,), n_queries: int = 20) -> tuple[pd.DataFrame, dict]:
    """:func:`evaluate` on each collection under each search configuration and exploration seed, side by side.

    Parameters
    ----------
    collections : dict
        Name -> (collection, labels CSV or None), as
        :func:`lab.datasets.evaluation_collections` returns them.
    settings : dict
        Name -> :class:`lab.search.SearchConfig`.
    seeds : sequence of int
        Exploration seeds (``SearchConfig.explore_seed``) to run each setting with.
    n_queries : int
        Query-by-example queries per evaluation (that table is not compared here).

    Returns
    -------
    rows : DataFrame
        One row per (collection, setting, seed): words, relevant images found
        in 1, 2, ... pages (means over words), the same in 3 pages for the
        words ImageNet does not cover, words never found, and the lowest
        new-page precision of any word and round.
    results : dict
        (collection, setting, seed) -> its :class:`Evaluation`.

    Notes
    -----
    Each collection's own configuration is put back afterwards.
    """
    import dataclasses

    rows, results = [], {}
    for name, (col, labels_csv) in collections.items():
        labels = collection_labels(col, labels_csv)
        saved = col.config
        try:
            for setting, config in settings.items():
                for seed in seeds:
                    col.config = dataclasses.replace(config, explore_seed=seed)
                    result = results[name, setting, seed] = evaluate(col, labels, n_queries=n_queries, seeds=1, progress=False)
                    summary = result.summary()
                    uncovered = result.words.loc[result.words["kind"] != "imagenet", "word"]
                    found = result.rounds[result.rounds["word"].isin(uncovered)].pivot(index="word", columns="round", values="found")
                    rows.append({"collection": name, "setting": setting, "seed": seed, "words": summary["n_words"],
                                 **{f"found in {plural(pages, 'page')}": value for pages, value in result.found_by_pages().items()},
                                 "uncovered words: found in 3 pages": found[2].mean() if 2 in found.columns else float("nan"),
                                 "never found": summary["words_never_found"], "lowest new-page precision": result.rounds["precision"].min()})
        finally:
            col.config = saved
    return pd.DataFrame(rows), results


def _word_key(name: str) -> str:
    """What a label names as a search word: "Daisies" and "daisy" -> "daisy" (the vocabulary's base form)."""
    from .vocabulary import load_vocabulary, normalize_term

    return load_vocabulary().base_form(normalize_term(name))  # normalize_term reads "_" as a space


def _usable_labels(col, labels: pd.Series) -> tuple[pd.Series, dict[str, list[str]], dict[str, list], list[str]]:
    """The labels an evaluation can use, their query words, what was left out (reason -> names), and the spellings merged.

    Left out: labeled paths not in the collection, images with an empty
    label, and labels that are no word (no letters) with their images.
    Labels that name one word are one label, under their most common
    spelling ("Cat = cat", "daisies = daisy": the same word to search as
    :meth:`lab.vocabulary.Vocabulary.base_form` says), in every experiment. Raises ValueError when no
    label names a word or fewer than two labels remain.
    """
    left_out = {}
    in_collection = labels.index.isin(set(col.paths))
    if (~in_collection).any():
        left_out["labeled paths not in the collection"] = list(labels.index[~in_collection])
    labels = labels[in_collection]
    if (labels == "").any():
        left_out["images with an empty label"] = list(labels.index[labels == ""])
        labels = labels[labels != ""]
    if labels.empty:
        raise ValueError("no image of the collection has a label: check the labels file's paths (relative to the CSV) or the folders")
    folded = labels.map({name: _word_key(name) for name in labels.unique()})
    spelling = {key: names.value_counts().sort_index(kind="stable").sort_values(ascending=False, kind="stable").index[0] for key, names in labels.groupby(folded)}
    merged = [" = ".join([spelling[key]] + sorted(set(names) - {spelling[key]})) for key, names in labels.groupby(folded) if names.nunique() > 1]
    labels = folded.map(spelling).rename(labels.name)
    query_words = caltech_query_words(labels)
    no_letters = [word for word in query_words if not has_letters(word)]
    if no_letters:  # "123" or "---" names no word a user could type: its images are no ground truth either
        left_out["labels that are not words (no letters)"] = no_letters
        labels = labels[~labels.isin([name for word in no_letters for name in query_words[word]])]
        query_words = {word: names for word, names in query_words.items() if word not in no_letters}
    also = _left_out_clause(left_out)
    if not query_words:
        raise ValueError(f"no label names a word to search for{also}")
    if labels.nunique() < 2:
        raise ValueError(f"every labeled image has the label {labels.iloc[0]!r}: an evaluation needs two labels or more "
                         f"(put the images in one folder per label, or pass a labels CSV){also}")
    return labels, query_words, left_out, merged


def _left_out_clause(left_out: dict[str, list]) -> str:
    """"; left out, <reason>: <names>" for each reason, to end an error message with."""
    return "".join(f"; left out, {reason}: {listing(items, 3)}" for reason, items in left_out.items())
