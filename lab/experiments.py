"""Experiments on labeled collections: keyword precision, simulated feedback, query by example.

These are what ``scripts/evaluate_caltech.py`` and notebooks 3 and 5 run; a
collection with ground-truth labels (one label per image path) is all they need.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .evaluate import average_precision, precision_at_k
from .neighbors import METRICS, NeighborIndex
from .vectors import LAYERS, layer_array, read_rows
from .vocabulary import Resolution, Vocabulary, load_vocabulary

__all__ = [
    "CALTECH_QUERY_WORDS",
    "caltech_query_words",
    "keyword_precision",
    "network_calls",
    "query_word",
    "query_by_example_table",
    "simulate_feedback",
    "teach_once",
    "top_classes",
    "uncovered_words",
    "unlabeled_rows",
    "vocabulary_classes",
]

# Caltech-101 folder names that are not plain nouns, mapped to the word a user would type.
CALTECH_QUERY_WORDS = {
    "car_side": "car",
    "cougar_body": "cougar",
    "cougar_face": "cougar",
    "crocodile_head": "crocodile",
    "flamingo_head": "flamingo",
    "Faces": "face",
    "Faces_easy": "face",
    "water_lilly": "water lily",
    "airplanes": "airplane",
    "Motorbikes": "motorbike",
    "Leopards": "leopard",
    "BACKGROUND_Google": None,  # clutter, not a class
}


# Caltech-101 classes that are kinds of another class's word (WordNet hyponyms),
# so a search for the word rightly returns them: a Windsor chair is a chair,
# a cougar is a wild cat.
CALTECH_HYPONYM_CLASSES = {
    "chair": ["windsor_chair"],
    "wild cat": ["cougar_body", "cougar_face"],
}


def query_word(label_name: str) -> str | None:
    """The word a user would type for a label: "water_lilly" -> "water lily", "Faces" -> "face"; None for Caltech's clutter class.

    >>> query_word("sports_car"), query_word("Motorbikes"), query_word("BACKGROUND_Google")
    ('sports car', 'motorbike', None)
    """
    return CALTECH_QUERY_WORDS.get(label_name, label_name.replace("_", " ").lower())


def caltech_query_words(label_names) -> dict[str, list[str]]:
    """Query word -> the Caltech-101 class names it should retrieve."""
    words: dict[str, list[str]] = {}
    for name in sorted(set(label_names)):
        word = query_word(name)
        if word:
            words.setdefault(word, []).append(name)
    for word, extra in CALTECH_HYPONYM_CLASSES.items():
        if word in words:
            words[word] += [name for name in extra if name in set(label_names)]
    return words


def uncovered_words(keywords: pd.DataFrame, words: dict[str, list[str]]) -> dict[str, list[str]]:
    """The words of ``words`` that :func:`keyword_precision` found ImageNet does not cover (kind other than "imagenet").

    >>> table = pd.DataFrame({"word": ["dog", "menorah"], "kind": ["imagenet", "related"]})
    >>> uncovered_words(table, {"dog": ["dog"], "menorah": ["menorah"]})
    {'menorah': ['menorah']}
    """
    return {word: words[word] for word in keywords.loc[keywords["kind"] != "imagenet", "word"]}


def _relevant_mask(col, labels: pd.Series, classes: list[str]) -> np.ndarray:
    """Boolean per collection row: does the row's image belong to ``classes``?"""
    by_path = labels.reindex(col.paths)
    return by_path.isin(classes).to_numpy()


def unlabeled_rows(col, labels: pd.Series) -> np.ndarray:
    """Rows of ``col`` whose images ``labels`` says nothing about.

    Nobody knows whether they show a word, so the experiments leave them out
    of every ranking they score (a condensed list, Sakai 2007) instead of
    counting them as misses: a labels file that covers part of a collection
    measures the labeled part.
    """
    return np.flatnonzero(~pd.Index(col.paths).isin(labels.index))


def keyword_precision(col, labels: pd.Series, words: dict[str, list[str]], k: int = 20) -> pd.DataFrame:
    """P@k and AP of each query word with no feedback, and where its evidence comes from.

    Parameters
    ----------
    col : Collection
    labels : Series
        Class name indexed by absolute image path.
    words : dict
        Query word -> class names it should retrieve.

    Returns
    -------
    DataFrame
        One row per word: ``kind``, ``n_relevant``, ``n_matches``, ``p@k``,
        ``ap``; ``vocabulary``, the ImageNet classes the word's prior weighs
        most (:func:`vocabulary_classes`); ``named_by_vocabulary``, the
        share of the word's images whose top class is one of them; and
        ``network_calls``, the classes the network names most of the word's
        images (:func:`network_calls`). When the share is near 0 the
        vocabulary cannot lead a user to the word: teaching one example
        image is the way in.
    """
    from .search.keywords import resolve_word

    vocabulary = load_vocabulary()
    rows = []
    unlabeled = unlabeled_rows(col, labels)
    for word, classes in words.items():
        relevant = _relevant_mask(col, labels, classes)
        result = col.search(word, k=len(col), exclude=unlabeled)
        hits = relevant[result["id"].to_numpy()]
        resolution, top = resolve_word(word, vocabulary), top_classes(col.class_probabilities, relevant)
        rows.append(
            {
                "word": word,
                "kind": result.attrs["kind"],
                "n_relevant": int(relevant.sum()),
                "n_matches": result.attrs["n_matches"],
                f"p@{k}": precision_at_k(hits, k),
                "ap": average_precision(hits, int(relevant.sum())),
                "vocabulary": vocabulary_classes(resolution, vocabulary),
                "named_by_vocabulary": float(np.isin(top, resolution.classes).mean()) if len(top) else float("nan"),  # no image: undefined
                "network_calls": network_calls(top, vocabulary),
            }
        )
    return pd.DataFrame(rows)


def vocabulary_classes(resolution: Resolution, vocabulary: Vocabulary, n: int = 3) -> str:
    """The ``n`` ImageNet classes a word's prior weighs most, heaviest first, and how many there are ("" when none).

    Parameters
    ----------
    resolution : Resolution
        What the vocabulary made of the word (:meth:`lab.vocabulary.Vocabulary.resolve`).
    vocabulary : Vocabulary
        For the classes' names.
    n : int
        Classes named.

    Examples
    --------
    >>> from lab.vocabulary import load_vocabulary
    >>> vocabulary = load_vocabulary()
    >>> vocabulary_classes(vocabulary.resolve("menorah"), vocabulary)
    'candle'
    >>> vocabulary_classes(vocabulary.resolve("dog"), vocabulary)
    '118 classes: Chihuahua, Japanese spaniel, Maltese dog, ...'
    """
    order = np.argsort(-np.asarray(resolution.weights), kind="stable")[:n]
    names = ", ".join(vocabulary.class_label(int(resolution.classes[i])) for i in order)
    return f"{len(resolution.classes)} classes: {names}, ..." if len(resolution.classes) > n else names


def top_classes(class_probabilities: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The class the network names each of ``rows`` with: its top-1 class.

    Parameters
    ----------
    class_probabilities : array of shape (n_images, 1000)
        May be memory-mapped or segmented (read with :func:`lab.vectors.read_rows`).
    rows : ndarray
        A boolean mask over the images, or row ids.
    """
    rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows, np.int64)
    return read_rows(class_probabilities, rows).argmax(axis=1) if len(rows) else np.zeros(0, np.int64)


def network_calls(top: np.ndarray, vocabulary: Vocabulary, n: int = 2) -> str:
    """The ``n`` classes most frequent in ``top`` (:func:`top_classes` of a word's images), with their shares.

    Parameters
    ----------
    top : ndarray of int
        A top-1 class per image.
    vocabulary : Vocabulary
        Gives each class its short name.
    n : int
        How many of the most frequent classes to list.

    Examples
    --------
    >>> from lab.vocabulary import load_vocabulary
    >>> network_calls(np.array([985, 985, 985, 738]), load_vocabulary())
    'daisy 75%, pot 25%'
    """
    if len(top) == 0:
        return ""
    classes, counts = np.unique(top, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:n]
    return ", ".join(f"{vocabulary.class_label(int(classes[i]))} {counts[i] / len(top):.0%}" for i in order)


def simulate_feedback(
    col,
    labels: pd.Series,
    words: dict[str, list[str]],
    rounds: int = 6,
    k: int = 20,
    user: str = "simulated",
    teach_first: bool = False,
    seed: int = 0,
    explore: bool = True,
) -> pd.DataFrame:
    """A simulated user judges every page a :class:`lab.session.SearchSession` shows, as a panel user would.

    Round 0 is the first page before any feedback. After each round the user
    marks each shown image relevant or not (from the labels), and the next
    round shows the session's next page: the panel's paging, same code path.
    With ``explore=False`` the page is instead the k best images with
    evidence not judged yet (no exploration, pages may be short). With ``teach_first`` the
    user first teaches the word with one random image of its class (which
    then counts as judged).

    Returns
    -------
    DataFrame
        One row per (word, round): ``precision`` of that page (hits / k);
        ``achievable``, the best precision possible given how many relevant
        images were still unjudged (a class of 40 images is used up after two
        good pages); ``relative``, precision divided by ``achievable``; and
        ``first_page_p@k``, P@k of the whole ranking the user would now see,
        where images judged relevant come first; ``found``, relevant images
        the user has marked so far, this page included (a better system can
        show a lower ``precision`` in a later round simply because it found
        more of a small class earlier; ``found`` does not have that problem).
    """
    from .session import SearchSession

    rng = np.random.default_rng(seed)
    rows = []
    unlabeled = unlabeled_rows(col, labels)
    for word, classes in words.items():
        relevant = _relevant_mask(col, labels, classes)
        judged = np.zeros(len(relevant), bool)
        found = 0
        session = SearchSession(col, word, page_size=k, user=user)
        session.skip(unlabeled)  # never shown: no label says whether they are relevant
        if teach_first:
            example = int(rng.choice(np.flatnonzero(relevant)))
            col.teach(word, example, user=user)
            col.judge(word, example, True, user=user)
            session.skip([example])
            judged[example] = True
        for round_ in range(rounds + 1):
            page = session.next_page() if explore else col.search(word, k=k, exclude_judged=True, exclude=unlabeled)
            ids = page["id"].to_numpy()
            first_page = col.search(word, k=k, exclude=unlabeled)["id"].to_numpy()
            achievable = min(k, int((relevant & ~judged).sum())) / k
            precision = precision_at_k(relevant[ids], k)
            found += int(relevant[ids].sum())
            rows.append(
                {
                    "word": word,
                    "round": round_,
                    "precision": precision,
                    "achievable": achievable,
                    "relative": precision / achievable if achievable else np.nan,
                    f"first_page_p@{k}": precision_at_k(relevant[first_page], k),
                    "found": found,
                    "shown": len(ids),
                }
            )
            session.judge(ids, relevant[ids])
            judged[ids] = True
    return pd.DataFrame(rows)


def teach_once(col, labels: pd.Series, words: dict[str, list[str]], k: int = 20, seed: int = 0) -> pd.DataFrame:
    """Teach each word with one random example of its class, then measure P@k (the example left out).

    Start from a collection without feedback for these words; the script
    repeats this with several seeds on fresh feedback stores to average out
    the luck of the example.
    """
    rng = np.random.default_rng(seed)
    rows = []
    unlabeled = unlabeled_rows(col, labels)
    for word, classes in words.items():
        relevant = _relevant_mask(col, labels, classes)
        example = int(rng.choice(np.flatnonzero(relevant)))
        col.teach(word, example, user="simulated")
        page = col.search(word, k=k + 1, exclude=unlabeled)
        ids = [i for i in page["id"].to_numpy() if i != example][:k]
        rows.append({"word": word, "seed": seed, "example": col.paths[example], f"p@{k}": precision_at_k(relevant[ids], k)})
    return pd.DataFrame(rows)


def query_by_example_table(
    col, labels: pd.Series, n_queries: int = 1000, seed: int = 0, metrics=METRICS, approximate: bool = True
) -> pd.DataFrame:
    """P@5, P@10, P@20 and mAP of query by example for each layer x metric (the original's table).

    Queries are a seeded sample of labeled images whose label has another
    image (a query alone in its label has nothing to find and would only
    pull the means down); relevant = same label; the query itself is left
    out; AP ranks the whole collection. With ``approximate`` an extra row per
    layer measures faiss IVF (cosine) against the exact ranking. No query:
    an empty table. ``table.attrs["n_queries"]`` is the number of queries.
    """
    label_of_row = labels.reindex(col.paths).to_numpy()
    labeled = np.flatnonzero(pd.notna(label_of_row))
    images_of_label = pd.Series(label_of_row[labeled]).value_counts()
    labeled = labeled[pd.Series(label_of_row[labeled]).map(images_of_label).to_numpy() > 1]
    if not len(labeled):
        table = pd.DataFrame(columns=["layer", "metric", "search", "p@5", "p@10", "p@20", "map"])
        table.attrs["n_queries"] = 0
        return table
    rng = np.random.default_rng(seed)
    queries = rng.choice(labeled, size=min(n_queries, len(labeled)), replace=False)
    is_labeled = pd.notna(label_of_row)
    rows = []
    n = len(col)
    for layer in LAYERS:
        vectors = layer_array(col, layer)
        configs = [(metric, "exact") for metric in metrics] + ([("cosine", "ivf")] if approximate else [])
        for metric, algorithm in configs:
            index = NeighborIndex(metric=metric, algorithm=algorithm).fit(vectors)
            # the approximate index's top 100, widened so that about 100 labeled images remain once the unlabeled are left out
            k_search = n if algorithm == "exact" else min(n, int(np.ceil(100 * n / max(int(is_labeled.sum()), 1))))
            precisions = {5: [], 10: [], 20: []}
            aps = []
            for start in range(0, len(queries), 100):
                block = queries[start : start + 100]
                _, ranked = index.kneighbors(np.asarray(vectors[block], np.float32), k_search)
                for query, order in zip(block, ranked):
                    order = order[(order != query) & (order >= 0)]
                    order = order[is_labeled[order]]  # an unlabeled neighbour is neither a hit nor a miss
                    hits = label_of_row[order] == label_of_row[query]
                    for k in precisions:
                        precisions[k].append(precision_at_k(hits, k))
                    aps.append(average_precision(hits, int((label_of_row == label_of_row[query]).sum()) - 1))
            rows.append(
                {
                    "layer": layer,
                    "metric": metric,
                    "search": "exact" if algorithm == "exact" else f"faiss IVF (top {k_search})",
                    "p@5": np.mean(precisions[5]),
                    "p@10": np.mean(precisions[10]),
                    "p@20": np.mean(precisions[20]),
                    "map": np.mean(aps) if algorithm == "exact" else np.nan,
                }
            )
    table = pd.DataFrame(rows)
    table.attrs["n_queries"] = len(queries)
    return table


def compare_models(images_folder, collection_base, models, labels: pd.Series, n_queries: int = 1000, progress: bool = True) -> pd.DataFrame:
    """The query-by-example table for several backbones, each indexed into ``<collection_base>-<model>``.

    Models whose weights are not on this machine are reported and skipped.
    """
    from .collection import Collection
    from .models import WeightsUnavailableError

    tables = []
    for model in models:
        try:
            col = Collection.open(f"{collection_base}-{model}", create=True, model=model)
            col.add(images_folder, progress=progress)
        except WeightsUnavailableError as err:
            print(f"skipped {model}: {err}")
            continue
        table = query_by_example_table(col, labels, n_queries=n_queries, approximate=False)
        table.insert(0, "model", model)
        tables.append(table)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
